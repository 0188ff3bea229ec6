#!/usr/bin/env bash
# `make install` / `make uninstall` for systems without the .deb (see the Makefile).
#
#   scripts/install.sh install|uninstall
#
# Settings come from the environment (the Makefile passes them): PREFIX, DESTDIR,
# INSTALL_PYTHON, DATADIR, DOCDIR, UNITDIR, MANDIR, BASHCOMPDIR.
#
# install: pip builds and installs the package with INSTALL_PYTHON, offline
# (--no-index --no-build-isolation: the interpreter's own setuptools), into a private
# staging root first. The commands land wherever that interpreter's install scheme
# puts them (Debian's pip maps --prefix /usr to /usr/local), so the script finds
# mfc-dbusd in the staging root and writes that real path into the unit's ExecStart=.
# Every file is then copied to DESTDIR and listed, with the directories install
# created, in $DATADIR/mfc-dbus/install-manifest, which `uninstall` reads back.
# Nothing here talks to systemd or the bus: it prints what to run afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

mode=${1:?usage: scripts/install.sh install|uninstall}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
INSTALL_PYTHON=${INSTALL_PYTHON:-/usr/bin/python3}
DATADIR=${DATADIR:-$PREFIX/share}
DOCDIR=${DOCDIR:-$DATADIR/doc/mfc-dbus}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
MANDIR=${MANDIR:-$DATADIR/man}
BASHCOMPDIR=${BASHCOMPDIR:-$DATADIR/bash-completion/completions}
MANIFEST=$DATADIR/mfc-dbus/install-manifest

work=
die() {
    echo "install: $*" >&2
    exit 1
}

uninstall() {
    local manifest="$DESTDIR$MANIFEST" kind path
    if [ ! -f "$manifest" ]; then
        echo "uninstall: nothing to do ($manifest does not exist)"
        return 0
    fi
    local -a dirs=()
    while read -r kind path; do
        case "$kind" in
        f) rm -f "$DESTDIR$path" ;;
        d) dirs+=("$path") ;;
        esac
    done <"$manifest"
    rm -f "$manifest"
    # The directories install created, deepest first (the manifest lists them
    # parents first); bytecode written there after the install is ours too.
    local i
    for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
        path="$DESTDIR${dirs[i]}"
        [ -d "$path" ] || continue
        if [ "$(basename "$path")" = __pycache__ ]; then
            rm -f "$path"/*.pyc
        fi
        rmdir "$path" 2>/dev/null || true
    done
    echo "uninstall: removed what $MANIFEST listed"
}

install_all() {
    "$INSTALL_PYTHON" - <<'PY' || die "$INSTALL_PYTHON cannot build offline: it needs pip, setuptools >= 66 and, with setuptools older than 70.1, wheel; on Debian: apt install python3-pip python3-setuptools python3-wheel"
import importlib.util, sys
from importlib.metadata import PackageNotFoundError, version
try:
    major, minor = (int(part) for part in version("setuptools").split(".")[:2])
except (PackageNotFoundError, ValueError):
    major, minor = 0, 0
ok = major >= 66 and importlib.util.find_spec("pip") is not None
if (major, minor) < (70, 1):
    ok = ok and importlib.util.find_spec("wheel") is not None
sys.exit(0 if ok else 1)
PY

    local stage src
    work=$(mktemp -d "${TMPDIR:-/tmp}/mfc-dbus-install.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    stage="$work/root"
    src="$work/src"
    mkdir -p "$stage" "$src"
    # Build from a clean copy: a stale build/ in the tree could carry old files
    # (e.g. the lab) into the wheel, and the tree gets no droppings.
    tar -C "$top" -c \
        --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
        --exclude=./debian --exclude=./bench/results --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
        --exclude=.hypothesis . | tar -C "$src" -x

    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PYTHONWARNINGS="ignore:Setuptools is replacing distutils." \
        "$INSTALL_PYTHON" -m pip install --quiet --no-deps --no-index \
        --no-build-isolation --ignore-installed --no-warn-script-location \
        --root "$stage" --prefix "$PREFIX" "$src"

    local daemon bindir
    daemon=$(cd "$stage" && find . -path '*/bin/mfc-dbusd' -type f)
    [ -n "$daemon" ] && [ "$(wc -l <<<"$daemon")" -eq 1 ] ||
        die "pip did not install exactly one mfc-dbusd: ${daemon:-none}"
    daemon=${daemon#.}
    bindir=$(dirname "$daemon")
    [ -f "$stage$bindir/mfc-dbus" ] || die "mfc-dbus is not next to $daemon"

    put() { # put MODE SOURCE DEST: a data file into the staging root
        install -D -m "$1" "$2" "$stage$3"
    }
    put 644 dbus/org.mfc.Forwarding1.conf "$DATADIR/dbus-1/system.d/org.mfc.Forwarding1.conf"
    put 644 dbus/org.mfc.Forwarding1.service \
        "$DATADIR/dbus-1/system-services/org.mfc.Forwarding1.service"
    put 644 dbus/org.mfc.Forwarding1.xml "$DATADIR/dbus-1/interfaces/org.mfc.Forwarding1.xml"
    put 644 polkit/org.mfc.Forwarding1.policy \
        "$DATADIR/polkit-1/actions/org.mfc.Forwarding1.policy"
    put 644 polkit/50-org.mfc.Forwarding1.rules "$DOCDIR/examples/50-org.mfc.Forwarding1.rules"
    put 644 README.md "$DOCDIR/README.md"
    put 644 docs/dbus-api.md "$DOCDIR/dbus-api.md"
    put 644 conf/mfc-dbus.conf "$DOCDIR/examples/mfc-dbus.conf"
    put 644 man/mfc-dbus.1 "$MANDIR/man1/mfc-dbus.1"
    put 644 man/mfc-dbusd.8 "$MANDIR/man8/mfc-dbusd.8"
    put 644 man/mfc-dbus.conf.5 "$MANDIR/man5/mfc-dbus.conf.5"
    put 644 completion/mfc-dbus.bash "$BASHCOMPDIR/mfc-dbus"
    mkdir -p "$stage$UNITDIR"
    sed "s|^ExecStart=/usr/bin/mfc-dbusd |ExecStart=$daemon |" systemd/mfc-dbus.service \
        >"$stage$UNITDIR/mfc-dbus.service"
    chmod 644 "$stage$UNITDIR/mfc-dbus.service"
    grep -q "^ExecStart=$daemon " "$stage$UNITDIR/mfc-dbus.service" ||
        die "could not set ExecStart=$daemon in the unit"
    mkdir -p "$stage$(dirname "$MANIFEST")"

    # The manifest: directories this install creates (parents first), then files.
    local manifest="$work/manifest" rel
    : >"$manifest"
    while read -r rel; do
        rel=${rel#.}
        [ -n "$rel" ] && [ ! -e "$DESTDIR$rel" ] && echo "d $rel" >>"$manifest"
    done < <(cd "$stage" && find . -type d | sort)
    (cd "$stage" && find . -type f | sort | sed 's/^\./f /') >>"$manifest"
    echo "f $MANIFEST" >>"$manifest"

    # Copy file by file: never copy directory modes or owners onto an existing tree.
    while read -r rel; do
        rel=${rel#.}
        install -D -m "$(stat -c %a "$stage$rel")" "$stage$rel" "$DESTDIR$rel"
    done < <(cd "$stage" && find . -type f | sort)
    install -D -m 644 "$manifest" "$DESTDIR$MANIFEST"

    echo "install: mfc-dbusd is $daemon (the unit's ExecStart), mfc-dbus is $bindir/mfc-dbus"
    echo "install: unit $UNITDIR/mfc-dbus.service; file list $MANIFEST (make uninstall)"
    if [ -z "$DESTDIR" ]; then
        echo "install: now run: systemctl daemon-reload && systemctl reload dbus" \
            "&& systemctl enable --now mfc-dbus"
    fi
}

case "$mode" in
install) install_all ;;
uninstall) uninstall ;;
*) die "unknown mode '$mode' (install or uninstall)" ;;
esac
