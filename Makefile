# The one task runner. CI runs `make test` (through .ci/run), exactly as the README says.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
WITH_STACK_ENV := set -a; [ -f .stack/env ] && . .stack/env; set +a;
# The deployed runtime's Python (template default, SAM_PYTHON_RUNTIME in tools/sam.mk): the local Lambda runs the
# functions on it and `make test` runs the integration tier on it once more, when a python of that version exists.
RUNTIME_PYTHON = $(patsubst python%,%,$(SAM_PYTHON_RUNTIME))
RUNTIME_VENV = .venv-$(RUNTIME_PYTHON)
PORT ?= 3000

.PHONY: help deps venv stack-up stack-down stack-clean stack-env migrate demo api test check lint types pytest \
        pytest-runtime test-unit test-integration test-faults test-load bench fmt clean doctor neon-ctl

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^[^:]*:([a-z-]+):.*## /\1\t/; s/^([a-z-]+):.*## /\1\t/' | column -t -s $$'\t'

deps:  ## system packages (PostgreSQL, PgBouncer) via apt when missing
	@tools/bootstrap.sh system

venv: deps  ## .venv with the runtime and dev requirements (+ .venv-3.13 when a python3.13 is installed)
	@tools/bootstrap.sh venv
	@tools/bootstrap.sh runtime-venv $(RUNTIME_PYTHON)

stack-up: venv  ## start the local Neon-like stack (Postgres + PgBouncer, TLS, SCRAM) and write .stack/env
	@$(PYTHON) -m tools.stack up

stack-down:  ## stop the local stack; nothing is left running
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m tools.stack down; else python3 -m tools.stack down; fi

stack-clean:  ## stop the local stack and delete .stack/
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m tools.stack clean; else python3 -m tools.stack clean; fi

# With DIRECT_DATABASE_URL in the environment (a Neon branch, production in CI) no local stack is started or read.
migrate: venv $(if $(DIRECT_DATABASE_URL),,stack-up)  ## apply the schema over the direct URL (migration mode); harmless to re-run
	@$(if $(DIRECT_DATABASE_URL),,$(WITH_STACK_ENV)) DATABASE_URL="$${DIRECT_DATABASE_URL:-$$DATABASE_URL}" $(PYTHON) -m lib.dbkit.migrate

demo: migrate  ## the main job: every function with each sample event, through AWS's runtime client, on the local stack
	@$(WITH_STACK_ENV) $(PYTHON) -m tools.demo

api: migrate  ## the HTTP API on http://127.0.0.1:3000 like `sam local start-api`, no Docker (PORT=… to change)
	@$(WITH_STACK_ENV) $(PYTHON) -m tools.http_api --port $(PORT)

neon-ctl:  ## switch the local Neon stand-in's scenario: make neon-ctl ARGS='refuse endpoint_disabled --sticky' (ARGS=status, reset, ...)
	@$(WITH_STACK_ENV) $(PYTHON) -m tools.neon_standin ctl $(or $(ARGS),status)

doctor: stack-up  ## check DATABASE_URL (default: the local pooler) against the template's rules and probe it
	@$(WITH_STACK_ENV) $(PYTHON) -m lib.dbkit.doctor $(URL)

lint: lint-workflows lint-templates  ## ruff (lint + format check), import-linter contracts; actionlint + zizmor on the workflows; checkov on the templates
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/lint-imports --no-cache

types:  ## mypy --strict over handlers, lib, tests, tools
	@$(BIN)/mypy

STOCK_DRIVER_TESTS := tests/integration/test_engine.py tests/integration/test_api.py tests/integration/test_scheduled.py \
	tests/integration/test_sqlalchemy_semantics.py

pytest:  ## the whole pytest suite, then the engine/API tests again on SQLAlchemy's stock pg8000 dialect
	@$(BIN)/pytest
	@DB_DRIVER=stock $(BIN)/pytest -q -m "not pipelined_driver" $(STOCK_DRIVER_TESTS)

# Not run again on the runtime's Python: the functions these tests drive through the local Lambda already ran on it
# in the first pass (the local runtime picks .venv-3.13 whatever runs pytest), and the others test our tools.
RUNTIME_PASS_SKIPS := test_fuzz_api test_http_api test_invoke test_local_runtime test_local_stack test_proxy test_bench_smoke

pytest-runtime:  ## the integration tier's in-process tests again on the deployed runtime's Python (.venv-3.13)
	@if [ -x $(RUNTIME_VENV)/bin/pytest ]; then \
		echo "[pytest-runtime] tests/integration on $$($(RUNTIME_VENV)/bin/python --version) ($(RUNTIME_VENV)), as $(SAM_PYTHON_RUNTIME)"; \
		$(RUNTIME_VENV)/bin/pytest tests/integration -p no:cacheprovider \
			$(foreach test,$(RUNTIME_PASS_SKIPS),--ignore=tests/integration/$(test).py); \
	else \
		echo "[pytest-runtime] skipped: no $(RUNTIME_VENV) (no python$(RUNTIME_PYTHON) on this machine; see tools/bootstrap.sh)"; \
	fi

check: lint types pytest pytest-runtime  ## lint + types + the whole pytest suite + the integration tier on python3.13

test: venv  ## everything CI runs: install, start the stack, lint, types, all tests, SAM checks
	@$(PYTHON) -m tools.stack run -- $(MAKE) --no-print-directory check sam-check

test-unit: venv  ## the unit tier only (no network)
	@$(BIN)/pytest tests/unit

test-integration: stack-up  ## the integration tier against the local stack
	@$(BIN)/pytest tests/integration

test-faults: stack-up  ## fault injection (proxy faults, server restarts) with requests flowing; restarts the local stack's servers
	@$(BIN)/pytest tests/faults

test-load: stack-up  ## hundreds of simulated execution environments through the pooler
	@$(BIN)/pytest tests/load

bench: migrate  ## round trips, server hold, cold start and scale: template vs seed and psycopg 3; writes bench/results.md (~6 min)
	@$(PYTHON) -m tools.bench

fmt: venv  ## format and auto-fix with ruff
	@$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean: stack-clean  ## stop the stack, delete .stack/, the venvs and caches
	rm -rf $(VENV) $(RUNTIME_VENV) .venv-sam .venv-checkov .aws-sam .pytest_cache .mypy_cache .ruff_cache

-include tools/sam.mk
-include tools/lint.mk
