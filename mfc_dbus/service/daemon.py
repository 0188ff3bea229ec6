"""`mfc-dbusd`: own org.mfc.Forwarding1 on the system bus and serve the engine.

Started by bus activation (through systemd) or directly:
`mfc-dbusd --state-file PATH --log-level info`. Logs go to stderr (the journal under
systemd). SIGTERM/SIGINT: save the state, flush the kernel, exit. SIGHUP: Reload.
The service never exits on idle: the kernel drops the routes when its socket closes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

from .. import __version__, contract
from ..config import CONFIG_FILE, EX_CONFIG, ConfigurationError, load_file
from ..engine import configured
from ..engine.sockets import KernelSockets
from ..errors import MfcError
from ..gcpause import gc_paused
from ..names import BUS_NAME, DEFAULT_STATE_FILE, OBJECT_PATH
from . import audit, fdstore, logsetup
from .auth import Authorizer
from .dispatch import Dispatcher
from .interface import Forwarding
from .leases import Leases
from .notify import notify
from .outbox import Outbox
from .upstream import tolerate_full_socket

log = logging.getLogger("mfc_dbus.service")

# Reconnecting to a bus that went away: first after this, doubling up to the cap (s).
RECONNECT_FIRST = 0.05
RECONNECT_CAP = 1.0


class NameTaken(MfcError):
    """Another process owns org.mfc.Forwarding1."""


@dataclass
class Options:
    state_file: Path | None = Path(DEFAULT_STATE_FILE)
    address: str | None = None
    learned_expiry: float = 60.0
    trust_root: bool = True
    runtime_file: Path | None = None
    config_file: Path | None = None


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
        "--runtime-file",
        help="where non-persistent routes and the kernel's VIF slots are kept across "
        "restarts (default: runtime.json in $RUNTIME_DIRECTORY under systemd, else none)",
    )
    parser.add_argument(
        "--config",
        default=str(CONFIG_FILE),
        help="the administrator's configuration (mfc-dbus.conf(5)), with conf.d/*.conf "
        f"beside it; 'none' reads no file (default {CONFIG_FILE})",
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="FILE",
        help="read the configuration (or FILE) without applying it or starting; exit "
        f"status 0 if it is good, {EX_CONFIG} naming every problem otherwise",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--version", action="version", version=f"mfc-dbusd {__version__}")
    args = parser.parse_args(argv)
    state = None if args.state_file == "none" else Path(args.state_file)
    runtime = args.runtime_file or (
        os.path.join(os.environ["RUNTIME_DIRECTORY"], "runtime.json")
        if os.environ.get("RUNTIME_DIRECTORY")
        else None
    )
    runtime_file = None if runtime in (None, "none") else Path(runtime)
    config = None if args.config == "none" else Path(args.config)
    if args.check is not None:
        sys.exit(check_configuration(Path(args.check) if args.check else config, bool(args.check)))
    options = Options(
        state,
        args.address,
        args.learned_expiry,
        runtime_file=runtime_file,
        config_file=config,
    )
    return options, args.log_level


def check_configuration(path: Path | None, one_file: bool) -> int:
    """`mfc-dbusd --check [FILE]`: the service's files (the main file and conf.d/) or
    one FILE with its includes, read as a start would, applied nowhere."""
    if path is None:
        print("mfc-dbusd: --config none: no configuration to check", file=sys.stderr)
        return EX_CONFIG
    try:
        configuration = load_file(path) if one_file else configured.read(path)
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr)
        return EX_CONFIG
    print(
        f"{path}: good: {len(configuration.routes)} routes, {len(configuration.joins)} "
        f"group joins, {len(configuration.interfaces)} interface settings"
    )
    return 0


def bus_address(options: Options) -> str | None:
    if options.address:
        return options.address
    if os.environ.get("DBUS_STARTER_BUS_TYPE") == "system":
        return os.environ.get("DBUS_STARTER_ADDRESS")
    return None  # dbus-fast: DBUS_SYSTEM_BUS_ADDRESS or the standard socket


def make_engine(options: Options, sockets: KernelSockets | None = None) -> Any:
    from ..engine import Engine, LinuxKernel

    return Engine(
        options.state_file,
        learned_expiry=options.learned_expiry,
        kernel=LinuxKernel(sockets),
        runtime_file=options.runtime_file,
        config_file=options.config_file,
    )


@dataclass
class Connection:
    """One connection to the bus and what serves on it."""

    bus: MessageBus
    outbox: Outbox
    authorizer: Authorizer


class Service:
    """The running service: the engine, and the bus connection that serves it.

    The engine (and so the kernel's table) does not depend on the bus: when the
    connection is lost the service keeps forwarding and learning, reconnects with
    backoff, owns the name again and sends the signals of what changed meanwhile.
    """

    def __init__(
        self, engine: Any, options: Options, sockets: KernelSockets | None = None
    ) -> None:
        self.engine = engine
        self.options = options
        self.sockets = sockets
        self.contract = contract.load()
        self.leases = Leases(engine)
        self.interface: Forwarding | None = None
        self.connection: Connection | None = None
        self._stopping = asyncio.Event()

    @property
    def bus(self) -> MessageBus | None:
        return None if self.connection is None else self.connection.bus

    async def start(self) -> None:
        """Start the engine, connect, export, then own the name (activation waits on it)."""
        await self.engine.start()
        self.interface = Forwarding(self.engine, self.leases, self.contract)
        for owner in self.engine.lease_owners():  # restored from the runtime record
            self.leases.watch(owner)
        self.leases.on_gone(self._forget_caller)
        try:
            await self._connect()
        except BaseException:
            await self.engine.stop(flush=not (self.sockets is not None and self.sockets.stored))
            raise
        log.info("mfc-dbusd %s serving %s on %s", __version__, BUS_NAME, OBJECT_PATH)

    def _forget_caller(self, name: str) -> None:
        if self.connection is not None:
            self.connection.authorizer.forget(name)

    async def _connect(self) -> None:
        assert self.interface is not None
        bus = await MessageBus(
            bus_address=bus_address(self.options), bus_type=BusType.SYSTEM
        ).connect()
        try:
            tolerate_full_socket(bus)
            outbox = Outbox(bus)
            authorizer = Authorizer(outbox, trust_root=self.options.trust_root)
            dispatcher = Dispatcher(self.interface, self.contract, authorizer, outbox)
            bus.add_message_handler(dispatcher.handle)
            await self.leases.attach(bus, outbox)
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
            if reply is not RequestNameReply.PRIMARY_OWNER:
                raise NameTaken(
                    f"cannot own {BUS_NAME} ({reply.name}): is mfc-dbusd already running?"
                )
        except BaseException:
            bus.disconnect()
            raise
        self.connection = Connection(bus, outbox, authorizer)
        self.interface.attach(outbox)

    def request_stop(self) -> None:
        self._stopping.set()

    def reload(self) -> None:
        notify("RELOADING=1", "STATUS=reloading the state file")
        try:
            result = self.engine.reload()
        except MfcError as exc:
            log.error("reload failed: %s", exc.message)
        else:
            audit.reload_on_signal(os.getuid(), result)
        notify("READY=1", self.status())

    def status(self) -> str:
        """The STATUS= line systemctl status shows."""
        bus = "serving" if self.connection is not None else "bus away, forwarding goes on"
        verifying = "; verifying the adopted kernel table" if self.engine.verifying else ""
        return (
            f"STATUS={bus}: {self.engine.route_count} routes, {self.engine.vif_count} VIFs"
            f"{verifying}"
        )

    async def tell_verified(self) -> None:
        """STATUS= again once the adopted kernel table is verified."""
        if self.engine.verifying:
            await self.engine.verified()
            notify(self.status())

    async def run_until_stopped(self) -> None:
        while not self._stopping.is_set():
            assert self.connection is not None
            if await self._stopped_or_disconnected(self.connection.bus):
                return
            log.warning("lost the bus connection; forwarding goes on, reconnecting")
            assert self.interface is not None
            self.interface.attach(None)
            self.connection.outbox.close()
            self.connection = None
            notify(self.status())
            await self._reconnect()
            notify(self.status())

    async def _stopped_or_disconnected(self, bus: MessageBus) -> bool:
        """Wait for a stop request (True) or the loss of `bus` (False)."""
        disconnected = asyncio.ensure_future(bus.wait_for_disconnect())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({disconnected, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (disconnected, stopping):
            task.cancel()
        if disconnected.done() and not disconnected.cancelled() and disconnected.exception():
            log.info("bus connection ended: %s", disconnected.exception())
        return self._stopping.is_set()

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._connect()
            except Exception as exc:  # any failure to reach the bus: try again
                failures += 1
                if failures == 1 or isinstance(exc, NameTaken):
                    log.warning("cannot reconnect yet (%s); retrying", exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, RECONNECT_CAP)
                continue
            log.info(
                "bus connection back after %d failed tries; %s owned again", failures, BUS_NAME
            )
            return

    async def stop(self) -> None:
        kept = self.sockets is not None and self.sockets.stored
        if kept:
            log.info("shutting down: saving state; the kernel's tables stay in systemd's "
                     "fd store (systemctl stop flushes them, a restart adopts them)")  # fmt: skip
        else:
            log.info("shutting down: saving state and flushing routes from the kernel")
        if self.interface is not None:
            self.interface.drain()  # the audit lines and signals of the last calls
        await self.engine.stop(flush=not kept)
        bus = self.bus
        if bus is not None and bus.connected:
            bus.disconnect()


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
    sockets = None
    if engine is None:
        sockets = KernelSockets(fdstore.passed_fds(), fdstore.store, fdstore.remove)
        engine = make_engine(options, sockets)
    service = Service(engine, options, sockets)
    remove_handlers = install_signal_handlers(service)
    try:
        try:
            with gc_paused():
                await service.start()
                # What start made (100,000 routes: a million objects) lives as long as
                # the process: freezing it spares every later collection a rescan.
                gc.freeze()
        except MfcError as exc:
            log.error("cannot start: %s", exc.message)
            return 1
        notify("READY=1", service.status())
        verified = asyncio.ensure_future(service.tell_verified())
        await service.run_until_stopped()
        verified.cancel()
        notify("STOPPING=1", "STATUS=saving state, flushing routes")
        await service.stop()
        return 0
    finally:
        remove_handlers()


def main(argv: Sequence[str] | None = None) -> int:
    options, level = parse_args(argv)
    logsetup.configure(level)
    return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
