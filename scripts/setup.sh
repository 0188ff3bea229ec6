#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: system packages
# (only those missing) and a .venv with the project and its test/dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3 iproute2 dbus-daemon polkitd libdbus-1-dev libglib2.0-dev pkg-config
      gcc linux-libc-dev smcroute systemd bash-completion groff-base passwd)
missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing the project into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[test,dev]'
    touch "$stamp"
fi
