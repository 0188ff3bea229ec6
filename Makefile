# mfc-dbus — see README.md. `make test` and `make demo` set everything up themselves.
PYTHON   ?= .venv/bin/python
PREFIX   ?= /usr/local
DESTDIR  ?=
PYTEST_ARGS ?=
DISTRO_PYTHON ?= .venv-debian/bin/python

.PHONY: setup typecheck test test-venv test-distro lint format bench demo install uninstall deb clean system-test scale-test

setup:
	@scripts/setup.sh

# The suite runs twice: in .venv with PyPI's newest dbus-fast/pyroute2/cffi, and with
# the distribution's own Python and python3-* libraries (.venv-debian sees only
# /usr/lib/python3/dist-packages besides the project itself).
test: setup
	$(PYTHON) -m pytest -m "not system and not scale" $(PYTEST_ARGS)
	$(DISTRO_PYTHON) -m pytest -m "not system and not scale" $(PYTEST_ARGS)

test-venv: setup
	$(PYTHON) -m pytest -m "not system and not scale" $(PYTEST_ARGS)

test-distro: setup
	$(DISTRO_PYTHON) -m pytest -m "not system and not scale" $(PYTEST_ARGS)

# `make scale-test`: a million routes through the service (about 11 minutes), once.
scale-test: setup
	$(PYTHON) -m pytest -m scale $(PYTEST_ARGS)

# `make system-test`: the .deb (`make deb`) installed with apt and run by a real systemd
# in systemd-nspawn containers of Debian 12 and 13 (tests/system/). Root filesystems
# are built on first use and cached under /var/tmp/mfc-dbus-rootfs (needs root).
SYSTEST_SUITES ?= bookworm trixie
system-test: setup
	scripts/rootfs.sh $(SYSTEST_SUITES) >/dev/null
	MFC_SYSTEST_SUITES="$(SYSTEST_SUITES)" $(PYTHON) -m pytest -m system tests/system $(PYTEST_ARGS)

lint: setup
	.venv/bin/black --check mfc_dbus mfc_lab tests bench
	.venv/bin/ruff check mfc_dbus mfc_lab tests bench
	.venv/bin/mypy

typecheck: setup
	.venv/bin/mypy

format: setup
	.venv/bin/black mfc_dbus mfc_lab tests bench
	.venv/bin/ruff check --fix mfc_dbus mfc_lab tests bench

bench: setup
	@mkdir -p bench/results
	@set -e; for script in bench/*.py; do \
		name=$$(basename $$script .py); \
		echo "== $$script"; \
		$(PYTHON) $$script --json bench/results/$$name.json; \
	done

clean:
	rm -rf build dist .venv-debian *.egg-info .pytest_cache .ruff_cache bench/results

# `make install [PREFIX=/usr] [DESTDIR=/tmp/stage] [INSTALL_PYTHON=/usr/bin/python3]`,
# for systems without the .deb: the package via INSTALL_PYTHON's pip, offline (no
# dependencies: use the distribution's dbus-fast, cffi and pyroute2), and the D-Bus,
# polkit and systemd data files where a distribution puts them. The system bus and
# polkitd read only /usr/share (and /etc): use PREFIX=/usr for a working system
# install. The unit's ExecStart= is the path where pip really put mfc-dbusd (Debian's
# pip maps --prefix /usr to /usr/local). `make uninstall` with the same PREFIX and
# DESTDIR removes exactly what install listed in $(DATADIR)/mfc-dbus/install-manifest.
# The state directory comes from the unit's StateDirectory=. See scripts/install.sh.
INSTALL_PYTHON ?= /usr/bin/python3
DATADIR  ?= $(PREFIX)/share
DOCDIR   ?= $(DATADIR)/doc/mfc-dbus
UNITDIR  ?= $(PREFIX)/lib/systemd/system
MANDIR   ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
INSTALL_ENV = PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" INSTALL_PYTHON="$(INSTALL_PYTHON)" \
	DATADIR="$(DATADIR)" DOCDIR="$(DOCDIR)" UNITDIR="$(UNITDIR)" MANDIR="$(MANDIR)" \
	BASHCOMPDIR="$(BASHCOMPDIR)"

install:
	@$(INSTALL_ENV) scripts/install.sh install

uninstall:
	@$(INSTALL_ENV) scripts/install.sh uninstall

# `make deb`: dist/mfc-dbus_<version>_all.deb with Debian's own tools (debhelper,
# dh-python, dh_installsystemd), offline; installs missing build dependencies with apt
# (root). Install it with `apt install ./dist/mfc-dbus_<version>_all.deb`.
deb:
	@scripts/build-deb.sh

demo: setup
	$(PYTHON) -m mfc_lab.demo
