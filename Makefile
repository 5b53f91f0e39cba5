# Two entry points for a fresh machine:
#   make demo   set up .venv, run the whole pipeline on config/config.yaml, print the table
#   make test   set up .venv, run the test suite
# and `make demo-full`: the demo plus config/demo-full.yaml (every method, clean labels).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CORES  ?= all

.PHONY: setup demo demo-full test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	PATH="$(BIN):$$PATH" snakemake all --cores $(CORES)
	@cat results/tables/main.md

demo-full: setup
	PATH="$(BIN):$$PATH" snakemake all --cores $(CORES) --configfile config/config.yaml config/demo-full.yaml
	@cat results/tables/main.md results/tables/methods.md

test: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow"

lint: setup
	PATH="$(BIN):$$PATH" snakemake --lint

bench: setup
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/train_step.py
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/demo_epoch.py

clean:
	rm -rf results resources .snakemake
