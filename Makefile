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

demo: $(JARS_READY)
	$(BIN)/python jobs/pipeline.py --conf $(DEMO_CONF)
	@echo
	@echo "Generated raw data:   $$($(BIN)/python -c 'from custseg.config import load_config as l; print(l("$(DEMO_CONF)").generate.output_dir)')"
	@echo "Delta tables:         $$($(BIN)/python -c 'from custseg.config import load_config as l; print(l("$(DEMO_CONF)").storage.warehouse)')"
	@echo "MLflow store:         $$($(BIN)/python -c 'from custseg.config import load_config as l; print(l("$(DEMO_CONF)").tracking.uri)')"
	@echo "Open the MLflow UI:   $(BIN)/mlflow ui --backend-store-uri $$($(BIN)/python -c 'from custseg.config import load_config as l; print(l("$(DEMO_CONF)").tracking.uri)')"

bench: $(JARS_READY)
	$(BIN)/python bench/generate.py --preset reference
	$(BIN)/python bench/ingest.py --preset reference
	$(BIN)/python bench/stitch.py --preset reference
	$(BIN)/python bench/features.py --preset reference
	$(BIN)/python bench/clv.py --preset reference
	$(BIN)/python bench/segment.py --preset reference

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache data
