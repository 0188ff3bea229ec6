"""The D-Bus face of the engine: org.mfc.Forwarding1 on the system bus.

Modules: `dispatch` (the bus message handler: contract methods, introspection,
properties), `auth` (polkit, the default-deny marks, the engine guard), `boundary`
(typed errors to D-Bus errors), `options` (a{sv} parsing), `convert` (model values to
D-Bus values), `interface` (the handlers and signals of /org/mfc/Forwarding1),
`leases` (routes that live as long as their caller), `outbox` (ordered sends with
flow control), `logsetup` (journal priorities), `daemon` (`mfc-dbusd`).
"""
