# The two commands of the README. Both set up (or reuse) the environment in .venv first.
#   make demo    the whole study on the synthetic cohort (CPU-sized)
#   make test    system packages, ruff and the whole test suite, slow tests included (what CI runs: .ci/run)
VENV ?= .venv
CORES ?= $(shell nproc)
BIN := $(VENV)/bin

.PHONY: env system-packages demo test test-quick lint

env:
	HNSEG_VENV=$(VENV) bash envs/setup.sh

# Debian packages some tests need (Chromium for the report in a browser). The SLURM test installs its own
# packages through ../shared/slurm/slurm-up.sh and removes its daemons afterwards.
system-packages:
	bash envs/system-packages.sh

demo: env
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES)

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers (pytest-xdist), each test file whole on one, the workflow runs built once for both (tests/conftest.py):
# those runs leave a core idle much of the time, and most other tests use one. --durations: the slowest tests end
# the log, so that CI shows where its time goes.
test: lint system-packages
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25

# Local iterations: the suite without the tests marked slow (the complete workflow run, SLURM, real training).
test-quick: lint
	$(BIN)/python -m pytest -m "not slow"
