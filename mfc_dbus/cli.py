"""mfc-dbus: the command-line client of the org.mfc.Forwarding1 service.

It speaks D-Bus only. The command line is read by cli_grammar, its values checked by
cli_prepare before any bus traffic, and run by cli_commands; this module turns the
outcome into one line on stderr and the exit status (0 ok, 1 error, 2 usage or invalid
argument, 4 not authorized), never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .cli_agent import PolkitAgent
from .cli_commands import Context, execute
from .cli_grammar import (
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    USAGE,
    UsageError,
    parse_command,
    parse_options,
)
from .cli_prepare import prepare
from .client_bus import ActivationFailed, ServiceUnavailable
from .config import EX_CONFIG, ConfigurationError
from .errors import AccessDenied, InteractiveAuthorizationRequired, InvalidArgument, MfcError
from .names import (
    ACTION_MANAGE_GROUPS,
    ACTION_MANAGE_INTERFACES,
    ACTION_MANAGE_ROUTES,
    BUS_NAME,
    EXAMPLE_RULES_INSTALLED,
)

EXIT_INTERRUPTED = 130

ACTION_WORDS = {
    ACTION_MANAGE_ROUTES: "manage routes",
    ACTION_MANAGE_INTERFACES: "manage interfaces",
    ACTION_MANAGE_GROUPS: "manage group joins",
}


def describe_error(error: MfcError) -> tuple[str, int]:
    """The one line printed for an error, and the exit status."""
    action = getattr(error, "action", None) or ACTION_MANAGE_ROUTES
    what = ACTION_WORDS.get(action, "do this")
    if isinstance(error, AccessDenied):
        return (
            f"not authorized to {what} (polkit action {action}); ask an administrator, "
            f"or see {EXAMPLE_RULES_INSTALLED}",
            EXIT_DENIED,
        )
    if isinstance(error, InteractiveAuthorizationRequired):
        return (
            f"authentication is required to {what} (polkit action {action}); run {PROG} on "
            "a terminal without --no-ask-password, or ask an administrator",
            EXIT_DENIED,
        )
    if isinstance(error, ServiceUnavailable):
        return (
            f"the mfc-dbus service ({BUS_NAME}) is not running and the bus cannot start it: "
            "is mfc-dbus installed? (systemctl status mfc-dbus)",
            EXIT_ERROR,
        )
    if isinstance(error, ActivationFailed):
        return (
            f"the bus could not start the mfc-dbus service: {error.message}; "
            "see `journalctl -u mfc-dbus`",
            EXIT_ERROR,
        )
    if isinstance(error, InvalidArgument):
        return error.message, EXIT_USAGE
    return error.message or type(error).__name__, EXIT_ERROR


def fail(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("mfc-dbus")
    except Exception:
        return "unknown"


def run(argv: Sequence[str], out: TextIO | None = None) -> int:
    """Run one command line; returns the exit status."""
    agent = PolkitAgent()
    try:
        return _run(argv, out or sys.stdout, agent)
    except UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(exc.message, file=sys.stderr, flush=True)
        return EX_CONFIG
    except MfcError as exc:
        message, status = describe_error(exc)
        fail(message)
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # never a traceback for the user
        if os.environ.get("MFC_DBUS_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (set MFC_DBUS_DEBUG=1 for details)")
        return EXIT_ERROR
    finally:
        agent.stop()


def _run(argv: Sequence[str], out: TextIO, agent: PolkitAgent) -> int:
    opts = parse_options(argv)
    if opts.help:
        print(USAGE, end="")
        return EXIT_OK
    if opts.version:
        print(f"{PROG} {version()}")
        return EXIT_OK
    command = parse_command(opts.words)
    if command.obj == "help":
        print(USAGE, end="")
        return EXIT_OK
    ready = prepare(command, opts)
    return asyncio.run(execute(Context(opts, out, agent), command, ready))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mfc-dbus` command."""
    status = run(sys.argv[1:] if argv is None else argv)
    sys.exit(status)


if __name__ == "__main__":
    main()
