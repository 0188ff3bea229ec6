"""The D-Bus face of the engine: org.mfc.Forwarding1 on the system bus.

Modules: `dispatch` (the bus message handler: contract methods, introspection,
properties, standard errors), `auth` (polkit, the default-deny marks, the engine
guard), `boundary` (typed errors to D-Bus errors), `options` (a{sv} parsing with the
contract's keys), `convert` (model values to the contract's D-Bus values),
`interface` (the handlers of /org/mfc/Forwarding1), `emitter` (audit lines, signals
and PropertiesChanged after the reply), `audit` (the audit trail), `leases` (routes
that live as long as their caller), `outbox` (ordered sends with flow control),
`logsetup` (journal priorities), `daemon` (`mfc-dbusd`).
"""
