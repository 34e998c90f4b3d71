# The two commands of the README. Both set up (or reuse) the environment in .venv first.
#   make demo    the whole study on the synthetic cohort (CPU-sized)
#   make test    ruff and the test suite (what CI runs: .ci/run)
VENV ?= .venv
CORES ?= $(shell nproc)
BIN := $(VENV)/bin

.PHONY: env demo test test-all lint

env:
	HNSEG_VENV=$(VENV) bash envs/setup.sh

demo: env
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES)

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

test-all: lint
	$(BIN)/python -m pytest -m ""

# local iterations: the suite without the tests marked slow (CI runs everything: `make test`)
.PHONY: test-quick
test-quick: lint
	$(BIN)/python -m pytest -m "not slow"
