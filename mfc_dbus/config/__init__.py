"""Administrators' configuration files, in smcroute.conf's syntax (mfc-dbus.conf(5))."""

from pathlib import Path

from .check import ConfigInterface, ConfigJoin, ConfigRoute, Configuration, check
from .files import CONFIG_FILE, read_configuration, read_file
from .problems import EX_CONFIG, ConfigurationError, Location, Problem

__all__ = [
    "CONFIG_FILE",
    "EX_CONFIG",
    "ConfigInterface",
    "ConfigJoin",
    "ConfigRoute",
    "Configuration",
    "ConfigurationError",
    "Location",
    "Problem",
    "load_configuration",
    "load_file",
]


def load_configuration(main: Path = CONFIG_FILE) -> Configuration:
    """The service's configuration: the main file and conf.d/*.conf beside it."""
    reading = read_configuration(main)
    return check(reading.directives, reading.problems)


def load_file(path: Path) -> Configuration:
    """One file and its includes, as `config check FILE` and `config import FILE` read it."""
    reading = read_file(path)
    return check(reading.directives, reading.problems)
