# The README's two commands: `make demo` and `make test`. Each creates/updates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench bench-scale mutation mutation-changed clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the only pair that imports together here (design.md, environment facts).
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

## Runs the main job end to end on the shipped demo data: pipeline, then the service with its UI.
demo: $(STAMP)
	$(BIN)/visearch demo

## Runs the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest

## The quick benchmark set (under 10 minutes on 2 cores); results land in benchmarks/results/.
## Latency needs an indexed demo category: run `make demo` (then stop its service) first.
bench: $(STAMP)
	$(BIN)/python benchmarks/embedding.py --images 512
	$(BIN)/python benchmarks/index.py --sizes 10000
	$(BIN)/python benchmarks/quality.py --recipes frozen,seed,default
	$(BIN)/python benchmarks/latency.py --requests 200 --clients 1,8
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/train.py

## The full Fashion-MNIST (70,000 images) end to end: prepare, pipeline, service latency, and what the
## training budget costs; about 10 minutes on 2 idle cores (benchmarks/results/scale.md).
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py

## Mutation testing of every decision module in pyproject's [tool.mutmut.modules], a score per module
## (CPU-heavy: well over an hour on 2 busy cores; report in benchmarks/results/mutation.md).
## MUTATION_JOBS=N sets the workers; scripts/mutation.sh MODULE... runs some.
mutation: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/mutation.sh

## What CI runs after the tests: every fifth mutant of the decision modules changed since
## MUTATION_BASE (default main); fails when a module scores under the committed minimum.
MUTATION_BASE ?= main
mutation-changed: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/mutation.sh --changed $(MUTATION_BASE) --sample

lint: $(STAMP)
	$(BIN)/ruff check src tests components pipelines serving ui benchmarks
	$(BIN)/mypy

clean:
	rm -rf .visearch
