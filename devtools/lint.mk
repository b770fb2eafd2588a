# Linters for what cannot run here, included by the Makefile: the GitHub workflows (actionlint with shellcheck,
# zizmor) and the CloudFormation templates (checkov). All run offline.
CHECKOV_VENV := .venv-checkov
CHECKOV_TEMPLATES := template.yaml observability.yaml infra/github-oidc.yaml

.PHONY: checkov-venv lint-workflows lint-templates

checkov-venv: $(CHECKOV_VENV)/.installed  ## .venv-checkov: checkov, apart from the app's pins

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@echo "[lint] installing requirements-checkov.txt into $(CHECKOV_VENV)" >&2
	@[ -x $(CHECKOV_VENV)/bin/python ] || python3 -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

lint-workflows: venv  ## actionlint (+ shellcheck on run: scripts) and zizmor on .github/workflows
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint
	@$(BIN)/zizmor --offline --quiet --persona pedantic .github/workflows

lint-templates: checkov-venv  ## checkov on template.yaml, observability.yaml, infra/github-oidc.yaml; skips only inline, with a reason
	@$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		$(addprefix -f ,$(CHECKOV_TEMPLATES))
