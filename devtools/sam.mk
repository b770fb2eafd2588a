# SAM verbs, included by the Makefile. The build rules that `sam build` itself runs are in devtools/sam/Makefile.
SAM_VENV := .venv-sam
SAM_BIN := $(SAM_VENV)/bin
SAM_ENV := SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}
# Same defaults as template.yaml's PythonRuntime/Architecture parameters (tests/kit/unit/test_template.py checks).
SAM_PYTHON_RUNTIME ?= python3.13
SAM_ARCHITECTURE ?= arm64

.PHONY: sam-venv sam-check sam-build invoke

sam-venv: $(SAM_VENV)/.installed  ## .venv-sam: aws-sam-cli + cfn-lint, apart from the app's pins

$(SAM_VENV)/.installed: requirements-sam.txt
	@echo "[sam] installing requirements-sam.txt into $(SAM_VENV)" >&2
	@[ -x $(SAM_BIN)/python ] || python3 -m venv $(SAM_VENV)
	@$(SAM_BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	@touch $@

sam-check: venv sam-venv  ## cfn-lint, sam validate --lint, sam build (this machine + deploy target), artifact checks
	@$(PYTHON) -m devtools.sam_check --sam-bin $(SAM_BIN)

sam-build: sam-venv  ## sam build into .aws-sam/ (SAM_PYTHON_RUNTIME=python3.12 SAM_ARCHITECTURE=x86_64 to change)
	@$(SAM_ENV) LAMBDA_PYTHON_VERSION=$(patsubst python%,%,$(SAM_PYTHON_RUNTIME)) LAMBDA_ARCHITECTURE=$(SAM_ARCHITECTURE) \
		$(SAM_BIN)/sam build --build-in-source \
		--parameter-overrides PythonRuntime=$(SAM_PYTHON_RUNTIME) Architecture=$(SAM_ARCHITECTURE)

# Without DATABASE_URL in the environment the function talks to the local stack, started here if needed.
invoke: venv $(if $(DATABASE_URL),,stack-up)  ## make invoke FUNCTION=ApiFunction EVENT=events/api-01-health.json [PARAMS="DbPool=nullpool"]
	@$(PYTHON) -m devtools.invoke $(FUNCTION) $(EVENT) $(foreach p,$(PARAMS),--parameter $(p))
