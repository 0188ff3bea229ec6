# mfc-dbus — see README.md. `make test` and `make demo` set everything up themselves.
PYTHON   ?= .venv/bin/python
PREFIX   ?= /usr/local
DESTDIR  ?=
PYTEST_ARGS ?=

.PHONY: setup test lint format bench demo install clean system-test

setup:
	@scripts/setup.sh

test: setup
	$(PYTHON) -m pytest -m "not system" $(PYTEST_ARGS)

# `make system-test`: the .deb (`make deb`) installed with apt and run by a real systemd
# in systemd-nspawn containers of Debian 12 and 13 (tests/system/). Root filesystems
# are built on first use and cached under /var/tmp/mfc-dbus-rootfs (needs root).
SYSTEST_SUITES ?= bookworm trixie
system-test: setup
	scripts/rootfs.sh $(SYSTEST_SUITES) >/dev/null
	MFC_SYSTEST_SUITES="$(SYSTEST_SUITES)" $(PYTHON) -m pytest -m system tests/system $(PYTEST_ARGS)

lint: setup
	.venv/bin/black --check mfc_dbus tests bench
	.venv/bin/ruff check mfc_dbus tests bench

format: setup
	.venv/bin/black mfc_dbus tests bench
	.venv/bin/ruff check --fix mfc_dbus tests bench

bench: setup
	@mkdir -p bench/results
	@set -e; for script in bench/*.py; do \
		name=$$(basename $$script .py); \
		echo "== $$script"; \
		$(PYTHON) $$script --json bench/results/$$name.json; \
	done

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache bench/results

# `make install [DESTDIR=/tmp/stage] [PREFIX=/usr]`: the package via pip into the
# prefix (dependencies are the distribution's: python3-dbus-fast, -cffi, -pyroute2),
# and the D-Bus, polkit and systemd data files where a distribution puts them. The
# system bus and polkitd read only /usr/share (and /etc): use PREFIX=/usr for a
# working system install. The state directory comes from the unit's StateDirectory=.
INSTALL_PYTHON ?= python3
BINDIR   ?= $(PREFIX)/bin
DATADIR  ?= $(PREFIX)/share
DOCDIR   ?= $(DATADIR)/doc/mfc-dbus
UNITDIR  ?= $(PREFIX)/lib/systemd/system
MANDIR   ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions

install:
	$(INSTALL_PYTHON) -m pip install --quiet --no-deps --ignore-installed \
		--no-warn-script-location --root "$(DESTDIR)/" --prefix "$(PREFIX)" .
	install -Dm644 dbus/org.mfc.Forwarding1.conf "$(DESTDIR)$(DATADIR)/dbus-1/system.d/org.mfc.Forwarding1.conf"
	install -Dm644 dbus/org.mfc.Forwarding1.service "$(DESTDIR)$(DATADIR)/dbus-1/system-services/org.mfc.Forwarding1.service"
	install -Dm644 dbus/org.mfc.Forwarding1.xml "$(DESTDIR)$(DATADIR)/dbus-1/interfaces/org.mfc.Forwarding1.xml"
	install -Dm644 polkit/org.mfc.Forwarding1.policy "$(DESTDIR)$(DATADIR)/polkit-1/actions/org.mfc.Forwarding1.policy"
	install -Dm644 polkit/50-org.mfc.Forwarding1.rules "$(DESTDIR)$(DOCDIR)/50-org.mfc.Forwarding1.rules"
	install -d "$(DESTDIR)$(UNITDIR)"
	sed 's|/usr/bin/mfc-dbusd|$(BINDIR)/mfc-dbusd|' systemd/mfc-dbus.service > "$(DESTDIR)$(UNITDIR)/mfc-dbus.service"
	chmod 644 "$(DESTDIR)$(UNITDIR)/mfc-dbus.service"
	install -Dm644 README.md "$(DESTDIR)$(DOCDIR)/README.md"
	install -Dm644 man/mfc-dbus.1 "$(DESTDIR)$(MANDIR)/man1/mfc-dbus.1"
	install -Dm644 man/mfc-dbusd.8 "$(DESTDIR)$(MANDIR)/man8/mfc-dbusd.8"
	install -Dm644 completion/mfc-dbus.bash "$(DESTDIR)$(BASHCOMPDIR)/mfc-dbus"

demo: setup
	$(PYTHON) -m mfc_dbus.lab.demo
