# custseg: `make demo` and `make test` are the two set-up commands (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
JARS_READY := $(VENV)/.delta-jars
DEMO_CONF ?= conf/local.yaml

.PHONY: install jars jars-mvn test lint typecheck pytest demo bench clean

install: $(INSTALLED)

$(INSTALLED): setup.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# Delta's JVM jars: resolved from Maven Central by Ivy on the first session and cached
# (~/.ivy2.5.2), the delta-spark pip way. Where Ivy cannot reach the repository but
# Maven can, fall back to `mvn dependency:copy` into .jars/ (used via CUSTSEG_JARS_DIR).
jars: $(JARS_READY)

$(JARS_READY): $(INSTALLED)
	$(BIN)/python -m custseg.session || { $(MAKE) jars-mvn && CUSTSEG_JARS_DIR=$(CURDIR)/.jars $(BIN)/python -m custseg.session; }
	touch $@

jars-mvn: $(INSTALLED)
	version=$$($(BIN)/python -c 'from importlib.metadata import version; print(version("delta-spark"))'); \
	for artifact in io.delta:delta-spark_2.13:$$version io.delta:delta-storage:$$version org.antlr:antlr4-runtime:4.13.1; do \
	  mvn -q dependency:copy -Dartifact=$$artifact -DoutputDirectory=$(CURDIR)/.jars || exit 1; \
	done
	@echo "Delta jars in .jars/: export CUSTSEG_JARS_DIR=$(CURDIR)/.jars"

lint: $(INSTALLED)
	$(BIN)/ruff check src jobs tests bench

typecheck: $(INSTALLED)
	$(BIN)/mypy src

pytest: $(JARS_READY)
	$(BIN)/pytest -q --durations=15

test: lint typecheck pytest

# The whole pipeline on the small preset, then what it found in plain text, the report's
# path and how to open the MLflow UI.
demo: $(JARS_READY)
	@set -e; run_id=demo-$$(date -u +%Y%m%dT%H%M%S); \
	setting() { $(BIN)/python -c "from custseg.config import load_config as l; print(l('$(DEMO_CONF)').$$1)"; }; \
	$(BIN)/python jobs/pipeline.py --conf $(DEMO_CONF) --run-id $$run_id; \
	echo; cat "$$(setting report.dir)/$$run_id/summary.txt"; echo; \
	echo "Delta tables:         $$(setting storage.warehouse)"; \
	echo "Compare with a run:   $(BIN)/python jobs/compare.py OTHER_RUN_ID $$run_id --conf $(DEMO_CONF)"; \
	echo "Open the MLflow UI:   $(BIN)/mlflow ui --host 127.0.0.1 --backend-store-uri $$(setting tracking.uri)"

bench: $(JARS_READY)
	$(BIN)/python bench/generate.py --preset reference
	$(BIN)/python bench/ingest.py --preset reference
	$(BIN)/python bench/stitch.py --preset reference
	$(BIN)/python bench/features.py --preset reference
	$(BIN)/python bench/clv.py --preset reference
	$(BIN)/python bench/segment.py --preset reference

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache data
