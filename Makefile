# One entry point for people and CI. Every target sets up what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OPENBLAS_NUM_THREADS := 1
export PYTHONHASHSEED := 0

.PHONY: setup run lint test test-fast dashboard serve loadtest screenshot help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all]"
	$(BIN)/python -m ipykernel install --sys-prefix --name recsys --display-name "Python 3 (recsys)"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned environment

run: setup  ## set up and run the whole research pipeline (dvc repro) on the default data
	dvc repro

lint: setup  ## ruff (lint + format check), mypy (strict on recsys) and bandit (security); scopes in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -c pyproject.toml -q -r recsys service dashboard loadtest benchmarks

test: setup lint  ## set up, lint, and run the whole test suite (installs Debian chromium, wrk and a Java runtime for Spark if missing)
	bash scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core
	bash scripts/ensure_deb.sh wrk wrk
	bash scripts/ensure_deb.sh java default-jre-headless
	$(BIN)/pytest -q

dashboard: setup  ## serve the Voilà dashboard on http://127.0.0.1:8866/ (after `make run`)
	$(BIN)/recsys dashboard

serve: setup  ## serve the HTTP API on http://127.0.0.1:8000/ (after `make run`)
	$(BIN)/recsys serve

screenshot: setup  ## regenerate the README dashboard screenshot from the default artifacts (after `make run`)
	bash scripts/ensure_deb.sh /usr/bin/chromium chromium fonts-dejavu-core
	RECSYS_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q tests/test_dashboard_browser.py -k readme_screenshot

loadtest: setup  ## locust + wrk load test of the service on 127.0.0.1 with a 5-minute soak (~13 min; after `make run`)
	bash scripts/ensure_deb.sh wrk wrk
	$(BIN)/python -m loadtest.run --soak 300

test-fast: setup  ## unit tests only (no notebooks, servers, browser or Spark)
	$(BIN)/pytest -q -m "not notebooks and not server and not browser and not spark"
