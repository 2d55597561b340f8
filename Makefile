# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: demo report test lint clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: the whole DAG on the generated demo corpus (CPU), then print its tables
demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@cat results/demo_table3.txt
	@printf '\nCaptioning (results/demo_captioning.md)\n\n'; cat results/demo_captioning.md
	@printf '\nAction recognition (results/demo_actions.md)\n\n'; cat results/demo_actions.md

## report: the demo's tables, curves, browsers and figures in one page (after `make demo`)
report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

## lint: ruff and snakemake --lint must report nothing
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint --cores 1

## test: lint, then the unit and end-to-end tests
test: lint
	$(BIN)/python -m pytest

## clean-demo: remove the demo's generated corpus and results
clean-demo:
	rm -rf resources/demo results/demo results/demo_* results/report.html
