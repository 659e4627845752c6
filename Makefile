# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# The dashboard's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download is not used).
CHROMIUM := /usr/bin/chromium
# The isolation tests run a service as a user of its own, with an interpreter every user
# may run: Debian's (this project's own may live under a home closed to other users).
SYSTEM_PYTHON := /usr/bin/python3
# Static sites are served by Debian's Caddy (their tests run it). Debian's package enables
# a caddy service on :80 where systemd runs: it is stopped and disabled at once, dployr
# runs its own Caddy per release.
CADDY := /usr/bin/caddy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The image tests run Debian's podman (with runc) against a docker-registry on loopback,
# with images they build from busybox-static (nothing is downloaded).
PODMAN_TOOLS := /usr/bin/podman /usr/bin/runc /usr/bin/docker-registry /usr/bin/busybox

# The cluster state's tests run Debian's PostgreSQL 15 (tests/pg.py: initdb in a temporary
# directory, as the postgres user). Debian's package may create and start a cluster of its
# own on :5432: its service is stopped and disabled at once, the tests start their own.
POSTGRES := /usr/lib/postgresql/15/bin/postgres

# The benchmarks load dployr with Debian's wrk, hyperfine and curl, and compare its proxy
# with nginx's stream module.
BENCH_TOOLS := /usr/bin/wrk /usr/bin/hyperfine /usr/bin/curl /usr/lib/nginx/modules/ngx_stream_module.so

# The import contracts of pyproject.toml ([tool.importlinter]) that `make lint` and the test
# suite (tests/test_imports.py) enforce: all of them.
IMPORT_CONTRACTS := store-below-engine pure-rules cli-through-the-api service-through-a-port only-os-spawns \
	pure-protocol gateway-on-protocol psycopg-for-postgres-only cluster-over-the-wire \
	agent-apart-from-the-control-plane
LINT_IMPORTS = $(BIN)/lint-imports --no-logo --no-cache $(addprefix --contract ,$(IMPORT_CONTRACTS))

.PHONY: run test lint imports bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install when the project or the pins change.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@ $(VENV)/.installed

# The daemon's options go in ARGS: make run ARGS="--port 7881 --data-dir ./data"
run: $(VENV)/.installed
	$(BIN)/dployr up $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check dployr tests benchmarks
	$(BIN)/ruff format --check dployr tests benchmarks
	$(BIN)/mypy --strict dployr
	$(LINT_IMPORTS)

# The import contracts alone (no install step: the test suite runs this).
imports:
	$(LINT_IMPORTS)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

$(SYSTEM_PYTHON):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3

$(CADDY):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq caddy
	if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now caddy.service; fi


$(PODMAN_TOOLS):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman runc docker-registry busybox-static

$(POSTGRES):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15
	if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now postgresql.service; fi

# The suite mostly waits on real processes, daemons and a browser: four workers share the
# two cores, in one run (the image tests keep to images and names of their own in podman's
# store: tests/images/conftest.py). Tests go to the workers one at a time, the longest
# first (tests/conftest.py orders them by the last run's times), so no long test is left
# to run alone at the end.
test: lint $(CHROMIUM) $(SYSTEM_PYTHON) $(CADDY) $(PODMAN_TOOLS) $(POSTGRES)
	$(BIN)/pytest -n 4 --maxschedchunk 1

$(BENCH_TOOLS):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk hyperfine curl nginx libnginx-mod-stream

bench: $(VENV)/.installed-test $(BENCH_TOOLS) $(CADDY)
	$(BIN)/python -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
