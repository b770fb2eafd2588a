# The one task runner. CI runs `make test` (through .ci/run), exactly as the README says.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
WITH_STACK_ENV := set -a; [ -f .stack/env ] && . .stack/env; set +a;

.PHONY: help deps venv stack-up stack-down stack-clean stack-env migrate demo test check lint types pytest \
        test-unit test-integration test-faults test-load bench fmt clean doctor neon-ctl

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^[^:]*:([a-z-]+):.*## /\1\t/; s/^([a-z-]+):.*## /\1\t/' | column -t -s $$'\t'

deps:  ## system packages (PostgreSQL, PgBouncer) via apt when missing
	@tools/bootstrap.sh system

venv: deps  ## .venv with the runtime and dev requirements
	@tools/bootstrap.sh venv

stack-up: venv  ## start the local Neon-like stack (Postgres + PgBouncer, TLS, SCRAM) and write .stack/env
	@$(PYTHON) -m tools.stack up

stack-down:  ## stop the local stack; nothing is left running
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m tools.stack down; else python3 -m tools.stack down; fi

stack-clean:  ## stop the local stack and delete .stack/
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m tools.stack clean; else python3 -m tools.stack clean; fi

# With DIRECT_DATABASE_URL in the environment (a Neon branch, production in CI) no local stack is started or read.
migrate: venv $(if $(DIRECT_DATABASE_URL),,stack-up)  ## apply the schema over the direct URL (migration mode); harmless to re-run
	@$(if $(DIRECT_DATABASE_URL),,$(WITH_STACK_ENV)) DATABASE_URL="$${DIRECT_DATABASE_URL:-$$DATABASE_URL}" $(PYTHON) -m lib.dbkit.migrate

demo: migrate  ## the main job: invoke every handler with every sample event against the local stack
	@$(WITH_STACK_ENV) $(PYTHON) -m tools.demo

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

STOCK_DRIVER_TESTS := tests/integration/test_engine.py tests/integration/test_api.py tests/integration/test_scheduled.py

pytest:  ## the whole pytest suite, then the engine/API tests again on SQLAlchemy's stock pg8000 dialect
	@$(BIN)/pytest
	@DB_DRIVER=stock $(BIN)/pytest -q -m "not pipelined_driver" $(STOCK_DRIVER_TESTS)

check: lint types pytest  ## lint + types + the whole pytest suite (needs `make venv`)

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
	rm -rf $(VENV) .venv-sam .venv-checkov .aws-sam .pytest_cache .mypy_cache .ruff_cache

-include tools/sam.mk
-include tools/lint.mk
