"""The D-Bus face of the engine: org.mfc.Forwarding1 on the system bus.

Modules: `context` (the incoming message of the current call), `auth` (polkit and the
default-deny method decorators), `boundary` (typed errors to D-Bus errors), `options`
(a{sv} parsing), `convert` (model values to D-Bus values), `interface` (the exported
object), `leases` (routes that live as long as their caller), `daemon` (`mfc-dbusd`).
"""
