#!/usr/bin/env bash
# scripts/rootfs.sh SUITE... | --prune — print the path of a cached root filesystem tarball
# for each Debian SUITE (bookworm, trixie), building it with mmdebstrap when missing.
#
# The system tests (tests/system/) boot these with systemd-nspawn. The container has
# no network, so everything the tests and the .deb's dependencies need is installed
# here, at build time. The cache key is the suite plus a hash of this script's package
# list and customize steps: change either and a new tarball is built; the old one stays
# until `scripts/rootfs.sh --prune` (or rm -rf $MFC_ROOTFS_CACHE).
#
# Environment: MFC_ROOTFS_CACHE (default /var/tmp/mfc-dbus-rootfs),
#              MFC_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

CACHE=${MFC_ROOTFS_CACHE:-/var/tmp/mfc-dbus-rootfs}
MIRROR=${MFC_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# A real systemd with a system bus and polkit; Debian's own Python libraries (the
# .deb's dependencies: it must install offline); tools the tests drive inside.
# pkttyagent is in polkitd on both suites; the sudo group (polkit's admin group on
# Debian) comes from base-passwd, so no sudo package is needed.
PACKAGES=(
    systemd systemd-sysv dbus polkitd
    python3 python3-dbus-fast python3-pyroute2 python3-cffi python3-systemd
    iproute2 procps passwd adduser util-linux
)

# Run inside the new root at build time. Keep in the hash (it is part of the key).
CUSTOMIZE='
set -e
root="$1"
# A fresh machine id at every first boot of an extracted copy.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo mfc-systest > "$root/etc/hostname"
# No getty on the container console: nothing reads it.
chroot "$root" systemctl mask console-getty.service getty@.service serial-getty@.service >/dev/null 2>&1 || true
# Boot to multi-user: no graphical target, no timers doing apt work in the tests.
chroot "$root" systemctl set-default multi-user.target >/dev/null 2>&1
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages* 2>/dev/null || true
'

key_of() {
    printf '%s\n' "$1" "${PACKAGES[@]}" "$CUSTOMIZE" | sha256sum | cut -c1-16
}

build() {
    local suite=$1 key out tmp
    key=$(key_of "$suite")
    out="$CACHE/$suite-$key.tar"
    if [ -s "$out" ]; then
        echo "$out"
        return
    fi
    mkdir -p "$CACHE"
    # One builder per tarball; a second caller waits, then finds it built.
    exec {lock}>"$out.lock"
    flock "$lock"
    if [ ! -s "$out" ]; then
        tmp="$out.tmp.$$"
        echo "rootfs: building $out with mmdebstrap (needs the Debian mirror)" >&2
        local started=$SECONDS
        local pkgs
        pkgs=$(IFS=,; echo "${PACKAGES[*]}")
        # The hook as an executable file (mmdebstrap runs it with the root as $1).
        hook="$out.hook.$$"
        trap 'rm -f "$tmp" "$hook"' EXIT
        printf '#!/bin/sh\n%s' "$CUSTOMIZE" > "$hook"
        chmod +x "$hook"
        mmdebstrap --quiet --variant=apt --mode=root --format=tar \
            --include="$pkgs" --customize-hook="$hook" \
            "$suite" "$tmp" "$MIRROR" >&2
        rm -f "$hook"
        mv "$tmp" "$out"
        trap - EXIT
        echo "rootfs: built $out in $((SECONDS - started)) s ($(du -h "$out" | cut -f1))" >&2
    fi
    flock -u "$lock"
    rm -f "$out.lock"
    echo "$out"
}

prune() {
    # Remove tarballs whose key no longer matches this script.
    local keep=() f suite
    for suite in bookworm trixie; do keep+=("$CACHE/$suite-$(key_of "$suite").tar"); done
    for f in "$CACHE"/*.tar; do
        [ -e "$f" ] || continue
        [[ " ${keep[*]} " == *" $f "* ]] || { echo "rootfs: removing stale $f" >&2; rm -f "$f"; }
    done
}

if [ $# -eq 0 ]; then
    echo "usage: $0 SUITE... | --prune" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "rootfs: needs root (mmdebstrap --mode=root)" >&2
    exit 1
fi
# The builder and the container runner, like scripts/setup.sh: only if missing.
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if [ ${#missing[@]} -gt 0 ]; then
    echo "rootfs: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$1" = --prune ]; then
    prune
    exit 0
fi
# Several suites build in parallel (a cold cache takes about as long as one suite);
# the paths are printed in the order the suites were given.
pids=()
outs=()
for suite in "$@"; do
    out=$(mktemp)
    outs+=("$out")
    build "$suite" >"$out" &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=1
    cat "${outs[$i]}"
    rm -f "${outs[$i]}"
done
exit $status
