# medlake: the two commands a user needs are `make run` and `make test`.
# Everything the project needs is installed from this file (venv from requirements.lock,
# the Debian `orthanc` package and Java 17 for Spark when missing).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared
SAMPLE_LAKE := data/sample_lake
BENCH_EXAMS ?= 20000

export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1
# No hub downloads at run time, ever.
export HF_HUB_OFFLINE := 1

.PHONY: help setup orthanc-installed java-installed run test lint sample-lake pytest bench docs evaluate clean

help:
	@echo "make run    - set up, then run the main job on a synthetic data set (lake + PACS loop)"
	@echo "make test   - set up, then lint (ruff, sqlfluff, hadolint), dbt build on the real sample, pytest"
	@echo "make bench  - benchmarks (BENCH_EXAMS=$(BENCH_EXAMS))"
	@echo "make docs   - serve the dbt docs on http://127.0.0.1:8080"
	@echo "make evaluate EVALUATOR=DIR DBT_UTILS=DIR - dbt-project-evaluator on the dbt project"

$(STAMP): requirements.lock pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP) orthanc-installed java-installed

# The PACS is the Debian package `orthanc`; we start it ourselves (medlake orthanc start).
orthanc-installed:
	@if ! command -v Orthanc >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing the Debian package orthanc"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc >/dev/null; \
	  else \
	    echo "Orthanc is not installed: run 'sudo apt-get install -y orthanc' (or use docker-compose.yml)"; exit 1; \
	  fi; \
	fi

# `medlake build --engine spark` (and its tests) run Apache Spark, which needs a Java 17 runtime.
# Debian's JRE postinst fails without /usr/share/man/man1 (absent in slim images).
java-installed:
	@if [ -z "$${JAVA_HOME:-}" ] && ! command -v java >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing the Debian package openjdk-17-jre-headless (Java for Spark)"; \
	    mkdir -p /usr/share/man/man1; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else \
	    echo "Java is not installed: run 'sudo apt-get install -y openjdk-17-jre-headless' (Spark needs Java 17)"; exit 1; \
	  fi; \
	fi

run: setup
	$(BIN)/medlake demo --workdir data/demo

lint: $(STAMP)
	$(BIN)/ruff check scripts tests/python examples
	$(BIN)/ruff format --check scripts tests/python examples
	$(BIN)/sqlfluff lint models analyses tests/dbt macros
	$(BIN)/hadolint Dockerfile

# The real public sample through the whole lake: land, then dbt build (models + tests).
sample-lake: $(STAMP)
	@if [ -d "$(SHARED)/data/neuralmed" ]; then \
	  rm -rf $(SAMPLE_LAKE); \
	  $(BIN)/medlake land --input $(SHARED)/data/neuralmed --lake $(SAMPLE_LAKE) --no-progress; \
	  $(BIN)/medlake build --lake $(SAMPLE_LAKE); \
	elif [ "$${CI:-}" = "true" ]; then \
	  echo "CI=true but $(SHARED)/data/neuralmed is missing"; exit 1; \
	else \
	  echo "skipping the real-sample build: $(SHARED)/data/neuralmed not found (a user's clone)"; \
	fi

pytest: setup
	$(BIN)/pytest

test: setup lint sample-lake pytest

bench: setup
	$(BIN)/medlake bench --exams $(BENCH_EXAMS) --workdir data/bench --output results/bench-$(BENCH_EXAMS).json

docs: $(STAMP)
	$(BIN)/medlake docs --lake data/demo/lake

# dbt-project-evaluator on a scratch copy of the dbt project; never part of run/test (its packages are not
# shipped). EVALUATOR, DBT_UTILS: checkouts of github.com/dbt-labs/dbt-project-evaluator and dbt-utils
# (or $$MEDLAKE_DBT_PROJECT_EVALUATOR_DIR, $$MEDLAKE_DBT_UTILS_DIR). Exit 1 on a finding no exception covers.
evaluate: $(STAMP)
	$(BIN)/python -m medlake.devtools.project_evaluator $(if $(EVALUATOR),--evaluator $(EVALUATOR)) \
	  $(if $(DBT_UTILS),--dbt-utils $(DBT_UTILS))

clean:
	rm -rf data/demo data/sample_lake data/bench target logs
