"""mfc-dbus: program the Linux multicast forwarding cache over D-Bus."""

__version__ = "0.2.0"
