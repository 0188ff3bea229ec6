#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: system packages
# (only those missing) and a .venv with the project and its test/dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3 iproute2 dbus-daemon polkitd libdbus-1-dev libglib2.0-dev pkg-config
      gcc linux-libc-dev smcroute systemd bash-completion groff-base passwd
      python3-venv python3-setuptools python3-dbus-fast python3-pyroute2 python3-cffi
      python3-pytest python3-dbusmock python3-hypothesis libglib2.0-bin lintian
      nftables python3-gi gir1.2-glib-2.0)
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
    .venv/bin/pip install -q -e '.[test,dev,bench]'
    touch "$stamp"
fi

# The distribution's Python with its own python3-* libraries (Debian 12: dbus-fast
# 1.84, pyroute2 0.7.2, cffi 1.15) and the project installed offline on top.
distro_stamp=.venv-debian/.installed
if [ ! -x .venv-debian/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv-debian
fi
if [ ! -f "$distro_stamp" ] || [ pyproject.toml -nt "$distro_stamp" ]; then
    echo "setup: installing the project into .venv-debian (distribution libraries)"
    .venv-debian/bin/python -m pip install -q --no-deps --no-build-isolation --no-index -e .
    touch "$distro_stamp"
fi

# The lab (mfc_lab/: namespaces, private buses, throwaway users) is test code that no
# package installs; both venvs find it, the demo and the benches from any directory.
for venv in .venv .venv-debian; do
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PWD" > "$site/mfc-dbus-lab.pth"
done
