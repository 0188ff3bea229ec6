# mfc-dbus — see README.md. `make test` and `make demo` set everything up themselves.
PYTHON   ?= .venv/bin/python
PREFIX   ?= /usr/local
DESTDIR  ?=
PYTEST_ARGS ?=

.PHONY: setup test lint format bench demo install clean

setup:
	@scripts/setup.sh

test: setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

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
