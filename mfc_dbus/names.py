"""Every D-Bus and polkit name the project uses, in one place."""

BUS_NAME = "org.mfc.Forwarding1"
OBJECT_PATH = "/org/mfc/Forwarding1"
INTERFACE = "org.mfc.Forwarding1"
ERROR_PREFIX = "org.mfc.Forwarding1.Error."

ACTION_MANAGE_ROUTES = "org.mfc.Forwarding1.manage-routes"
ACTION_MANAGE_INTERFACES = "org.mfc.Forwarding1.manage-interfaces"
ACTION_MANAGE_GROUPS = "org.mfc.Forwarding1.manage-groups"

POLKIT_BUS_NAME = "org.freedesktop.PolicyKit1"
POLKIT_OBJECT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_INTERFACE = "org.freedesktop.PolicyKit1.Authority"

DBUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
DBUS_INTERACTIVE_AUTHORIZATION_REQUIRED = (
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
)
DBUS_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"

DEFAULT_STATE_FILE = "/var/lib/mfc-dbus/state.json"

# Bus daemon names used by the service (lease tracking, caller uid, polkit absence).
DBUS_DAEMON_NAME = "org.freedesktop.DBus"
DBUS_DAEMON_PATH = "/org/freedesktop/DBus"
DBUS_DAEMON_INTERFACE = "org.freedesktop.DBus"
DBUS_NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
DBUS_PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"

# Polkit subject kind for a caller identified by its unique bus name.
POLKIT_SUBJECT_BUS_NAME = "system-bus-name"
# CheckAuthorization flag: the caller may be asked for a password.
POLKIT_ALLOW_USER_INTERACTION = 1

# Installed data file names (dbus/, polkit/, systemd/).
INTERFACE_XML = "org.mfc.Forwarding1.xml"
BUS_POLICY_CONF = "org.mfc.Forwarding1.conf"
ACTIVATION_FILE = "org.mfc.Forwarding1.service"
POLKIT_POLICY = "org.mfc.Forwarding1.policy"
POLKIT_EXAMPLE_RULES = "50-org.mfc.Forwarding1.rules"
SYSTEMD_UNIT = "mfc-dbus.service"

# A VIF whose interface is missing is listed with this index.
PENDING_VIF_INDEX = 0xFFFFFFFF

# Where the Debian package puts the example polkit rule (quoted in refusals).
EXAMPLE_RULES_INSTALLED = "/usr/share/doc/mfc-dbus/examples/" + POLKIT_EXAMPLE_RULES

# Standard D-Bus interfaces and errors the service answers or sends itself.
DBUS_PEER_INTERFACE = "org.freedesktop.DBus.Peer"
DBUS_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
DBUS_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
DBUS_UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"
DBUS_UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
DBUS_PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"
# The ListRoutes details key of a page's last row: where the next page starts.
PAGE_NEXT = "next"
