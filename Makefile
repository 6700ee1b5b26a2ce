# The two commands a newcomer needs: `make run` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Project code checked by `make lint` (migrations included: they are code too).
CODE := shared gateway $(sort $(wildcard *_service)) deploy loadtests conftest.py

.PHONY: help venv run test lint bench load chaos keys lock compose-check swarm-check clean distclean

help:
	@echo "make run    - start MySQL/Redis if needed, migrate, run all seven services (Ctrl-C stops; ARGS=--json-logs)"
	@echo "make test   - start MariaDB/Redis if needed, then the whole suite against them (ARGS=\"path -x\")"
	@echo "make lint   - ruff and mypy --strict"
	@echo "make bench  - gateway vs direct throughput, side by side (starts its own processes; ARGS=--tracing: tracing off vs on)"
	@echo "make load   - a sale opening under Locust, then the invariant checker (ARGS=\"--host URL ...\")"
	@echo "make chaos  - a sale under a seeded fault schedule on its own Redis/MariaDB, then the invariants (ARGS=\"--seed N ...\")"
	@echo "make lock   - renew requirements.lock and requirements-dev.lock from pyproject.toml"
	@echo "make keys   - write development keys (JWT signing, identity signing) into .env (optional for docker compose)"
	@echo "make compose-check - docker-compose.yml on a real engine, checked from outside, then down"
	@echo "make swarm-check - the same images on Docker Swarm with replicas, a sale while replicas die"
	@echo "make clean  - remove caches and .data/ (distclean also removes .venv)"

venv: $(STAMP)

# The first Python >= 3.11 among these names (pyenv shims may exist for versions not installed,
# so each candidate is asked for its version instead of trusting `command -v`).
$(PYTHON):
	@for candidate in python3.13 python3.12 python3.11 python3; do \
	  if $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	    echo "creating $(VENV) with $$($$candidate -V)"; \
	    $$candidate -m venv $(VENV) && exit 0; \
	  fi; \
	done; \
	echo "error: Python >= 3.11 is needed (tried python3.13, python3.12, python3.11, python3)" >&2; \
	exit 1

# Re-installs only when the lock or pyproject.toml changes: exactly the locked versions, each
# checked against its hash; then the project itself, which brings no dependency of its own.
$(STAMP): requirements-dev.lock pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PYTHON) -m pip install --quiet --no-deps -e .
	@touch $@

# One resolution for every Python >= 3.11 and platform (the image runs 3.12, the machines 3.11);
# the runtime lock is held to the dev lock's versions, so tests and the image run the same code.
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --quiet
lock: venv
	$(LOCK) --extra dev --upgrade -o requirements-dev.lock
	$(LOCK) --constraint requirements-dev.lock -o requirements.lock

run: venv
	$(PYTHON) -m deploy.run_local $(ARGS)

# The datastores are found or started as `make run` does (deploy/prepare_tests.py); the
# Kubernetes manifests' test renders them with kubectl (installed here when missing). Two worker
# processes, each given whole modules (a module's fixtures start its system once), each with
# its own schemas and Redis database (shared/testing/datastores.py).
TEST_WORKERS ?= 2
test: venv
	deploy/k8s/ensure_kubectl.sh
	$(PYTHON) -m deploy.prepare_tests
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

lint: venv
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/mypy $(CODE)

bench: venv
	$(PYTHON) -m loadtests.bench_gateway $(ARGS)

# A sale opening on its own loopback system (or ARGS="--host URL"), checked and reported under
# .data/loadtests/<timestamp>/; see loadtests/README.md.
load: venv
	$(PYTHON) -m loadtests.sale_run $(ARGS)

# A sale with payments while every app, Redis and MariaDB are killed and restarted, on the run's
# own datastores; verdict and report under .data/chaos/<timestamp>/; see docs/chaos.md.
chaos: venv
	$(PYTHON) -m loadtests.chaos $(ARGS)

keys: venv
	$(PYTHON) -m deploy.dev_keys

# Starts (and installs, as root) a Docker engine if none answers; see deploy/compose_check/.
compose-check: venv
	$(PYTHON) -m deploy.compose_check

# Docker Swarm with replicas and a sale while tasks die and scale; see deploy/swarm_check/.
swarm-check: venv
	$(PYTHON) -m deploy.swarm_check

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
