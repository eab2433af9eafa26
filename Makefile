# Tenure developer tasks. `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv dev bench bench-quick docs test test-unit lint format typecheck crds check-examples clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with Tenure and its test tools installed

dev: $(STAMP) ## Run the local sandbox (Kubernetes API emulator, OpenBao, operator) until Ctrl-C
	$(BIN)/tenure dev

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: $(STAMP) ## Run the whole test suite (unit, emulator contract, integration)
	@$(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest collected no tests: failing' >&2; exit 1; fi; exit $$rc

test-unit: $(STAMP) ## Run the unit tests only
	$(BIN)/pytest -q tests/unit

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix operator tests
	$(BIN)/ruff format operator tests

typecheck: $(STAMP) ## mypy --strict over the operator and the dev tools
	$(BIN)/mypy

crds: $(STAMP) ## Render crds/ from the pydantic models
	$(BIN)/python -m tenure.api.crd crds

bench: $(STAMP) ## Benchmarks: Tenure vs a naive baseline, 10,000 identities (long; docs/benchmarks.md)
	$(BIN)/python tests/bench/run.py --scale full

bench-quick: $(STAMP) ## The same benchmarks at 1/40 of the scale (about 6 minutes; CI runs it)
	$(BIN)/python tests/bench/run.py --scale quick

docs: $(STAMP) ## Regenerate docs/configuration.md from `tenure run --help`
	$(BIN)/python -c 'from tenure.cli import configuration_reference as r; open("docs/configuration.md", "w").write(r())'

check-examples: $(STAMP) ## Validate examples/ offline with `tenure check`
	$(BIN)/tenure check examples/

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
