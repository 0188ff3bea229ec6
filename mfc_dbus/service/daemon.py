"""`mfc-dbusd`: own org.mfc.Forwarding1 on the system bus and serve the engine.

Started by bus activation (through systemd) or directly:
`mfc-dbusd --state-file PATH --log-level info`. Logs go to stderr (the journal under
systemd). SIGTERM/SIGINT: save the state, flush the kernel, exit. SIGHUP: Reload.
The service never exits on idle: the kernel drops the routes when its socket closes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import BusType, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag

from .. import __version__
from ..errors import MfcError
from ..names import BUS_NAME, DEFAULT_STATE_FILE, OBJECT_PATH
from . import context
from .auth import Authorizer
from .eager import EagerMethodBus
from .interface import Forwarding
from .leases import Leases
from .writer import tolerate_full_socket

log = logging.getLogger("mfc_dbus.service")


@dataclass
class Options:
    state_file: Path | None = Path(DEFAULT_STATE_FILE)
    address: str | None = None
    learned_expiry: float = 60.0
    trust_root: bool = True


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, str]:
    parser = argparse.ArgumentParser(
        prog="mfc-dbusd", description="D-Bus service org.mfc.Forwarding1 (multicast routes)"
    )
    parser.add_argument(
        "--state-file",
        default=DEFAULT_STATE_FILE,
        help="where persistent routes and VIFs are kept; 'none' keeps nothing "
        f"(default {DEFAULT_STATE_FILE})",
    )
    parser.add_argument(
        "--address",
        help="bus address (default: the activating bus, else the system bus, honouring "
        "DBUS_SYSTEM_BUS_ADDRESS)",
    )
    parser.add_argument(
        "--learned-expiry",
        type=float,
        default=60.0,
        help="seconds an idle learned (S,G) from a (*,G) route lives (default 60)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--version", action="version", version=f"mfc-dbusd {__version__}")
    args = parser.parse_args(argv)
    state = None if args.state_file == "none" else Path(args.state_file)
    return Options(state, args.address, args.learned_expiry), args.log_level


def bus_address(options: Options) -> str | None:
    if options.address:
        return options.address
    if os.environ.get("DBUS_STARTER_BUS_TYPE") == "system":
        return os.environ.get("DBUS_STARTER_ADDRESS")
    return None  # dbus-fast: DBUS_SYSTEM_BUS_ADDRESS or the standard socket


def make_engine(options: Options) -> Any:
    from ..engine import Engine  # the real engine (mfc_dbus.engine.core)

    return Engine(options.state_file, learned_expiry=options.learned_expiry)


class Service:
    """The running service: bus connection, exported object, leases and the engine."""

    def __init__(self, engine: Any, options: Options) -> None:
        self.engine = engine
        self.options = options
        self.bus: MessageBus | None = None
        self.interface: Forwarding | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect, start the engine, export, then own the name (activation waits on it)."""
        self.bus = await EagerMethodBus(
            bus_address=bus_address(self.options), bus_type=BusType.SYSTEM
        ).connect()
        tolerate_full_socket(self.bus)
        context.install(self.bus)
        await self.engine.start()
        authorizer = Authorizer(self.bus, trust_root=self.options.trust_root)
        leases = Leases(self.bus, self.engine)
        leases.on_gone(authorizer.forget)
        await leases.start()
        self.interface = Forwarding(self.engine, authorizer, leases)
        self.bus.export(OBJECT_PATH, self.interface)
        reply = await self.bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply is not RequestNameReply.PRIMARY_OWNER:
            await self.engine.stop(flush=True)
            self.bus.disconnect()
            raise MfcError(f"cannot own {BUS_NAME} ({reply.name}): is mfc-dbusd already running?")
        log.info("mfc-dbusd %s serving %s on %s", __version__, BUS_NAME, OBJECT_PATH)

    def request_stop(self) -> None:
        self._stopping.set()

    def reload(self) -> None:
        try:
            result = self.engine.reload()
        except MfcError as exc:
            log.error("reload failed: %s", exc.message)
            return
        logging.getLogger("mfc_dbus.audit").info("uid=%d SIGHUP reload: %s", os.getuid(), result)

    async def run_until_stopped(self) -> None:
        assert self.bus is not None
        disconnected = asyncio.ensure_future(self.bus.wait_for_disconnect())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({disconnected, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if disconnected.done():
            log.warning("lost the bus connection; shutting down")
        for task in (disconnected, stopping):
            task.cancel()

    async def stop(self) -> None:
        log.info("shutting down: saving state and flushing routes from the kernel")
        if self.interface is not None:
            self.interface.drain()  # the audit lines and signals of the last calls
        await self.engine.stop(flush=True)
        if self.bus is not None and self.bus.connected:
            self.bus.disconnect()


def install_signal_handlers(service: Service) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.request_stop)
    loop.add_signal_handler(signal.SIGINT, service.request_stop)
    loop.add_signal_handler(signal.SIGHUP, service.reload)

    def remove() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)

    return remove


async def serve(options: Options, engine: Any = None) -> int:
    service = Service(engine if engine is not None else make_engine(options), options)
    remove_handlers = install_signal_handlers(service)
    try:
        try:
            await service.start()
        except MfcError as exc:
            log.error("cannot start: %s", exc.message)
            return 1
        await service.run_until_stopped()
        await service.stop()
        return 0
    finally:
        remove_handlers()


def main(argv: Sequence[str] | None = None) -> int:
    options, level = parse_args(argv)
    # The logging HOWTO's "Optimization": our format shows none of these, and the audit
    # line of every change would otherwise walk the stack to find its caller.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="%(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
