"""A GLib client of org.mfc.Forwarding1, as a NetworkManager-style program writes one:
Gio.DBusProxy with the installed interface XML as its interface info, state mirrored
from the signals alone. Run by /usr/bin/python3 (PyGObject), not by the project's venv.

    glib_mirror.py ADDRESS XML

Prints "ready" once subscribed. Each line "dump" on stdin: calls ListRoutes and
ListVifs and prints one JSON line with the mirror, the lists and the signals seen.
End of stdin: exits.
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402


class Mirror:
    def __init__(self, proxy: Gio.DBusProxy, loop: GLib.MainLoop) -> None:
        self.proxy = proxy
        self.loop = loop
        self.routes: dict[tuple, list] = {}  # (table, family, source, group, input) -> outputs
        self.vifs: dict[tuple, int] = {}  # (interface, family, table) -> index
        self.signals = 0
        proxy.connect("g-signal", self.on_signal)

    def on_signal(self, _proxy, _sender, name: str, parameters: GLib.Variant) -> None:
        self.signals += 1
        args = parameters.unpack()
        if name == "RouteAdded":
            source, group, input_, outputs, table, family = args
            self.routes[(table, family, source, group, input_)] = sorted(outputs)
        elif name == "RouteRemoved":
            source, group, input_, table, family = args
            self.routes.pop((table, family, source, group, input_), None)
        elif name == "VifAdded":
            interface, index, family, table = args
            self.vifs[(interface, family, table)] = index
        elif name == "VifRemoved":
            interface, _index, family, table = args
            self.vifs.pop((interface, family, table), None)

    def dump(self) -> None:
        """ListRoutes, then ListVifs, each answered after every signal sent before it."""
        self.proxy.call(
            "ListRoutes", GLib.Variant("(a{sv})", ({},)), Gio.DBusCallFlags.NONE, 10_000, None,
            self.on_routes, None,
        )  # fmt: skip

    def on_routes(self, proxy: Gio.DBusProxy, result: Gio.AsyncResult, _data) -> None:
        (routes,) = proxy.call_finish(result).unpack()
        listed = {
            (details["table"], details["family"], source, group, input_): sorted(outputs)
            for source, group, input_, outputs, details in routes
        }
        mirrored = dict(self.routes)  # as it stood when the reply came
        signals = self.signals

        def on_vifs(proxy: Gio.DBusProxy, result: Gio.AsyncResult, _data) -> None:
            (vifs,) = proxy.call_finish(result).unpack()
            listed_vifs = {
                (interface, details["family"], details["table"]): index
                for interface, index, details in vifs
            }
            print(json.dumps({
                "routes": {"mirror": _rows(mirrored), "listed": _rows(listed)},
                "vifs": {"mirror": _rows(self.vifs), "listed": _rows(listed_vifs)},
                "signals": signals,
            }), flush=True)  # fmt: skip

        proxy.call(
            "ListVifs", GLib.Variant("(a{sv})", ({},)), Gio.DBusCallFlags.NONE, 10_000, None,
            on_vifs, None,
        )  # fmt: skip

    def on_stdin(self, channel: GLib.IOChannel, condition: GLib.IOCondition) -> bool:
        line = channel.readline()
        if not line:
            self.loop.quit()
            return False
        if line.strip() == "dump":
            self.dump()
        return True


def _rows(table: dict) -> list:
    return sorted([*key, value] for key, value in table.items())


def main(address: str, xml_path: str) -> int:
    with open(xml_path) as xml:
        node = Gio.DBusNodeInfo.new_for_xml(xml.read())
    info = node.interfaces[0]
    name, path = info.name, node.path  # the bus name is the interface's name
    connection = Gio.DBusConnection.new_for_address_sync(
        address,
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None,
        None,
    )
    # The interface info makes GDBus check every signal against the XML: a signal of
    # another signature is dropped with a warning on stderr.
    proxy = Gio.DBusProxy.new_sync(
        connection, Gio.DBusProxyFlags.NONE, info, name, path, info.name, None
    )
    loop = GLib.MainLoop()
    mirror = Mirror(proxy, loop)
    # A round trip to the service: the bus has the proxy's match rule from here on.
    connection.call_sync(
        name, path, "org.freedesktop.DBus.Peer", "Ping", None, None,
        Gio.DBusCallFlags.NONE, 10_000, None,
    )  # fmt: skip
    stdin = GLib.IOChannel.unix_new(sys.stdin.fileno())
    GLib.io_add_watch(stdin, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP,
                      mirror.on_stdin)  # fmt: skip
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
