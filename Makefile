# Two entry points for a fresh machine:
#   make demo   set up .venv, run the whole pipeline on config/config.yaml, print the table
#   make test   set up .venv, lint the workflow, run the test suite
# and `make demo-full`: the demo plus config/demo-full.yaml (every method, clean labels).
# And two for maintainers:
#   make dvc.yaml   regenerate the DVC pipeline from the default config (a test checks it is current)
#   make dvc.lock   run that pipeline with DVC (the whole demo, ~1 CPU-hour) and record its hashes
#                   (dvc.lock is not committed: README, "Sharing one set of results")
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CORES  ?= all

.PHONY: setup demo demo-full test test-fast test-slurm lint bench bench-gpu gpu-check clean dvc.yaml dvc.lock

# pip byte-compiles the ~15,000 installed .py files one at a time (an install here: 2 m 52 s
# with it, 1 m 39 s without); compileall does it on every core. A few files some packages
# ship for newer Pythons (e.g. torch's py312_intrinsics.py) do not compile, as pip ignores
# too: hence the `|| true`.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	PATH="$(BIN):$$PATH" snakemake all --cores $(CORES)
	@cat results/tables/main.md results/verdict.md

demo-full: setup
	PATH="$(BIN):$$PATH" snakemake all --cores $(CORES) --configfile config/config.yaml config/demo-full.yaml
	@cat results/tables/main.md results/tables/methods.md results/verdict.md

# Two pytest workers (pytest-xdist): the end-to-end tests spend much of their time in
# one-core phases (process start-up, imports, DAG building), so two overlap well even on
# 2 cores. --dist loadfile keeps each module on one worker, so its module- and session-scoped
# fixtures are built once and its tests keep their order (test_methods_train's students after
# their teachers). Not loadgroup: with pytest 9.2 it no longer groups (pytest-xdist issue 1386).
# --no-loadscope-reorder: xdist would hand out the modules with the most tests first, so the
# one-test paper smokes (the longest modules) started last; tests/conftest.py orders them first.
TEST_WORKERS ?= 2
PYTEST_DIST  := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

test: setup lint
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_DIST)

# The workflow on a real single-node SLURM with accounting, and one without (root, Debian's
# slurm-wlm munge slurmdbd mariadb-server; .ci/run installs them): .ci/slurm-test.sh.
test-slurm: setup
	.ci/slurm-test.sh

test-fast: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_DIST)

# Seconds: the workflow's lints on the .test/ config, and its formatting.
lint: setup
	PATH="$(BIN):$$PATH" snakemake --lint --configfile .test/config/config.yaml
	PATH="$(BIN):$$PATH" snakefmt --check workflow/

dvc.yaml: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m soften dvc_pipeline --configfile config/config.yaml --out dvc.yaml

dvc.lock: dvc.yaml
	PATH="$(BIN):$$PATH" DVC_NO_ANALYTICS=1 dvc repro

# CPU regression check: soften's PGD-AT step and PGD-20 beside plain PyTorch + torchattacks,
# per-method overheads (docs/performance.md).
bench: setup
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/vs_torchattacks.py
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/train_step.py
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/demo_epoch.py

# The suite for a GPU box (runs on CPU too): benchmarks/results/<device>.json + .md, read by `soften plan`.
bench-gpu: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m soften bench

# What only a GPU shows (~10 min on one H100): bench, both paper files' smoke scale on CUDA, the precision
# and speed tests, the fp32/bf16 study; benchmarks/results/gpu-check-<device>.json + .md. CPU: GPU_CHECK=--reduced.
gpu-check: setup
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK)

clean:
	rm -rf results resources .snakemake
