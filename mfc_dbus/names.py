"""Every D-Bus and polkit name the project uses, in one place."""

BUS_NAME = "org.mfc.Forwarding1"
OBJECT_PATH = "/org/mfc/Forwarding1"
INTERFACE = "org.mfc.Forwarding1"
ERROR_PREFIX = "org.mfc.Forwarding1.Error."

ACTION_MANAGE_ROUTES = "org.mfc.Forwarding1.manage-routes"
ACTION_MANAGE_INTERFACES = "org.mfc.Forwarding1.manage-interfaces"

POLKIT_BUS_NAME = "org.freedesktop.PolicyKit1"
POLKIT_OBJECT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_INTERFACE = "org.freedesktop.PolicyKit1.Authority"

DBUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
DBUS_INTERACTIVE_AUTHORIZATION_REQUIRED = (
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
)
DBUS_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"

DEFAULT_STATE_FILE = "/var/lib/mfc-dbus/state.json"
