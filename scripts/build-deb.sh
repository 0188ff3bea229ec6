#!/usr/bin/env bash
# `make deb`: builds dist/mfc-dbus_<version>_all.deb from this tree with Debian's own
# tools (debhelper, dh-python/pybuild, dh_installsystemd), offline. Missing build
# dependencies (debian/control's Build-Depends) are installed with apt, like
# scripts/setup.sh does. The build runs in a copy of the tree under a temporary
# directory, so neither the tree nor its parent directory get build droppings.
# Prints the path of the .deb on the last line of its output. DEB_VERSION=V builds the
# tree as version V (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
outdir=${DEB_OUTDIR:-$top/dist}

# One version: pyproject.toml's, which debian/changelog's top entry must repeat.
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)
deb_version=$(head -n1 debian/changelog | sed -n 's/^mfc-dbus (\([^)]*\)).*/\1/p')
if [ -z "$version" ] || [ "$version" != "$deb_version" ]; then
    echo "build-deb: pyproject.toml says version '$version' but debian/changelog" \
        "says '$deb_version': add a changelog entry (dch -v $version)" >&2
    exit 1
fi

install_missing() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-deb: need root to install the build dependencies: $*" >&2
        exit 1
    fi
    echo "build-deb: installing Debian packages: $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# dpkg-checkbuilddeps (dpkg-dev) reads debian/control offline; apt-get build-dep
# resolves the virtual names (debhelper-compat, dh-sequence-python3) it lists.
command -v dpkg-checkbuilddeps >/dev/null || install_missing dpkg-dev
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        dpkg-checkbuilddeps >&2 || true
        echo "build-deb: need root to install the missing build dependencies" >&2
        exit 1
    fi
    echo "build-deb: installing the missing build dependencies (apt-get build-dep)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq ./ >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mfc-dbus-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/mfc-dbus-$version"
mkdir "$src"
# The tree as it is (uncommitted edits included), without local droppings.
tar -C "$top" -c \
    --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
    --exclude=./bench/results --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis \
    --exclude=./debian/mfc-dbus --exclude=./debian/.debhelper --exclude=./.pybuild \
    . | tar -C "$src" -x

# DEB_VERSION=0.1.0+systest1: the same tree built as another (e.g. higher) version, for
# upgrade tests. Only the temporary copy is rewritten (pyproject.toml, the module's
# __version__ and a new top debian/changelog entry); the tree is never touched.
if [ -n "${DEB_VERSION:-}" ] && [ "$DEB_VERSION" != "$version" ]; then
    sed -i "s/^version *= *\".*\"/version = \"$DEB_VERSION\"/" "$src/pyproject.toml"
    sed -i "s/^__version__ = .*/__version__ = \"$DEB_VERSION\"/" "$src/mfc_dbus/__init__.py"
    maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' debian/changelog | head -n1)
    {
        printf 'mfc-dbus (%s) unstable; urgency=medium\n\n' "$DEB_VERSION"
        printf '  * Test build of %s as %s (DEB_VERSION).\n\n' "$version" "$DEB_VERSION"
        printf ' -- %s  %s\n\n' "$maintainer" "$(date -R)"
        cat debian/changelog
    } >"$src/debian/changelog"
    version=$DEB_VERSION
fi

log="$work/build.log"
# Debian's own interpreter and tools only: a python3 earlier on PATH (pyenv, a venv,
# /usr/local) must not build a package that runs on /usr/bin/python3.
if ! (cd "$src" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    dpkg-buildpackage --build=binary --no-sign) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "build-deb: dpkg-buildpackage failed (last 60 lines above)" >&2
    exit 1
fi

deb="mfc-dbus_${version}_all.deb"
mkdir -p "$outdir"
cp "$work/$deb" "$outdir/$deb"
echo "$outdir/$deb"
