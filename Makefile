# Two commands on a fresh machine: `make up` and `make test`. Each installs what it needs
# into .venv first (pip from PyPI; nothing is downloaded at run time).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=
# The suite's processes (pytest-xdist; 0: one process, as plain `pytest`). Most of a test's time
# is spent waiting on the real servers it starts: with 3 on 2 cores the CPU was busy about half
# the time, and 4 took pytest from 9 min 23 s to 7 min 57 s on a quiet machine (2026-12-04,
# 1,999 tests). With 6 the CPU was busy 96% of the run (vmstat, 2026-12-05, 2,448 tests: 8 min
# 33 s, beside two other jobs), so more would only queue. Whole files go to one process
# (loadfile), with their module-scoped stacks; each process starts its own session stacks
# (tests/e2e/conftest.py, tests/faults/conftest.py). Files go out in the order they are
# collected (--no-loadscope-reorder): e2e's, the longest (the three fuzz files, 100-190 s each),
# first, and the many short unit files last. xdist's own order, most tests first, sent the fuzz
# files (a test or a few each) out last: for the last 60-80 s one process ran while the
# CPU was 40% idle (vmstat, 2026-12-06; the suite 630 s in order, 648 and 696 s reordered).
TEST_WORKERS ?= 6
PYTEST_PAR := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# The suite's processes write and read bytecode caches (__pycache__/: ignored by git, kept out
# of the images by .dockerignore) even where PYTHONDONTWRITEBYTECODE is set, as on some CI
# runners: every saxgw, cell and gateway process a test starts imports the same modules, and
# each compiled them again (measured: a third of a `saxgw ls`'s CPU, 15-20% of the CPU of 13 of
# test_cli's tests), and each pytest process rewrote the asserts of every test module (6 of the
# 11 s of CPU a collection takes). `warm` compiles the sources and collects once (~12 s of one
# core), then the workers read the caches (collection: 5 s of CPU each instead of 11).
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest
UP_ARGS ?=

.PHONY: install up test lint gen check-gen contract openapi unit integration e2e faults bench bench-tools soak clean \
	warm \
	chromium nginx container-test

# Both packages in one pip command: sax-gateway requires sax-gateway-client (which alone ships
# saxgateway.v1) and no index has it; named here, pip takes it from clients/python.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@echo "Installing sax-gateway and its dependencies into $(VENV) (the first time takes minutes)..."
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]' -e clients/python
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

## Start the embedded Sax cell, the gateway and Envoy on :8888 (Ctrl-C stops them).
## Extra flags for it: make up UP_ARGS="--cors-origin http://localhost:3000"
up: install
	$(VENV)/bin/saxgw up $(UP_ARGS)

## Run every check and the whole test suite.
# The checks and the warm-up run side by side: each is one busy core (mypy alone ~45 s, on a
# fresh clone), and one after another they left the other core idle: a fresh clone reached the
# suite 164 s after `make test` started, 118 s side by side (pip's install ~70 s of either).
test: install chromium nginx
	$(MAKE) --no-print-directory -j 4 --output-sync=target check-gen lint contract warm
	$(PYTEST) $(PYTEST_PAR) $(PYTEST_ARGS)

# Bytecode and the rewritten test modules, for the suite's processes to read (PYTEST above).
warm: install
	$(PY) -m compileall -q -j 0 gateway gen clients/python >/dev/null
	$(PYTEST) --collect-only -q -n 0 >/dev/null || true  # the run reports what fails to collect

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict clients/python/saxgateway_client

gen: install node_modules/.installed
	PYTHON=$(PY) scripts/gen

check-gen: install node_modules/.installed
	PYTHON=$(PY) scripts/check-gen

# Node tooling (buf, the Node example client), pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## Debian's Chromium, for the /docs page test (tests/e2e/test_docs_page.py); needs root.
chromium:
	scripts/install-debian chromium chromium

## Debian's nginx, in front of the stack in tests/e2e/test_behind_nginx.py (installed as root,
## without starting its service).
nginx:
	scripts/install-nginx

## The load generators the benchmark drives (bench/_loadgen.py).
bench-tools:
	scripts/install-debian "wrk h2load" wrk nghttp2-client

## The API contract: buf lint, format and breaking (scripts/buf-check), OpenAPI up to date.
contract: install node_modules/.installed
	PYTHON=$(PY) scripts/buf-check
	$(PY) scripts/openapi.py --check
	$(VENV)/bin/mypy --strict scripts/openapi.py scripts/apidocs.py scripts/head_bindings.py \
	  scripts/node_oneofs.py scripts/proto_bundle.py

## Regenerate openapi/openapi.json and docs/api.md from proto/.
openapi: install
	$(PY) scripts/openapi.py

unit integration e2e faults: install
	$(PYTEST) tests/$@ $(PYTEST_PAR) $(PYTEST_ARGS)

## Benchmarks: starts its own stack; writes bench/results.json and BENCHMARKS.md (~6-7 min on a
## quiet machine by its phases, 9.5 measured at load 7; one phase: BENCH_ARGS="--only streams").
## Installs wrk and h2load (Debian's wrk and nghttp2-client) if absent; needs root for that.
bench: install bench-tools
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]' -e clients/python
	$(PY) -m bench $(BENCH_ARGS)

## The compose stack and both Kubernetes overlays' pods for real (scripts/container-test):
## installs and starts a container engine if absent, builds the images with no registry, checks
## through the containerised Envoy, and tears everything down. Needs root. Ports:
## SAXGW_CT_*_PORT (18888, 18901, 25051, 20000-1); each pod has a network of its own.
container-test: install
	PYTHON=$(PY) scripts/container-test

## Reliability soak: 10 minutes (SOAK_SECONDS) of mixed load with the admin, a model server
## and a gateway killed mid-way; writes RELIABILITY.md.
soak: install
	$(PY) -m soak --seconds $${SOAK_SECONDS:-600}

clean:
	rm -rf $(VENV) .saxgw .pytest_cache .mypy_cache .ruff_cache
