"""The client speaks D-Bus only: importing it loads no engine, kernel or service code."""

import subprocess
import sys


def test_the_client_loads_no_engine_kernel_or_service_module():
    script = (
        "import sys, mfc_dbus.cli, mfc_dbus.cli_commands\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('mfc_dbus.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "mfc_dbus.cli_groups" in loaded  # the commands really were imported
    below = [m for m in loaded if m.startswith(("mfc_dbus.engine", "mfc_dbus.kernel",
                                                 "mfc_dbus.service"))]  # fmt: skip
    assert below == []
