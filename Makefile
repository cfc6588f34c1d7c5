# synthocr: two commands do all the set-up.
#   make report   set up, then run the main job on the default config
#   make all      set up, then build every model and report of the config
#   make test     set up, then run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/config.yaml
CORES ?= all
# PyTorch build: cpu (default), or cuda on a GPU machine (`make report TORCH=cuda`). Unset, it
# is the build the environment was last set up with (its one stamp's), so a later `make test`
# keeps a CUDA set-up's torch; `TORCH=cpu` switches back (the set-up replaces the stamp).
ifeq ($(origin TORCH),undefined)
TORCH := $(or $(shell cd $(VENV) 2>/dev/null && ls -t .synthocr-cpu-* .synthocr-cuda-* 2>/dev/null \
	| head -n 1 | cut -d- -f2),cpu)
endif
export TORCH
# Installed environment is keyed on the pins and the build: editing pyproject.toml re-installs.
STAMP := $(VENV)/.synthocr-$(TORCH)-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: setup system-deps system-deps-test report all smoke test test-fast lint format dag clean

setup: $(STAMP) system-deps

# A CUDA build from another index than TORCH_INDEX_URL (the set-up records the one it used) is
# replaced: the set-up runs again though the stamp is newer than its inputs.
ifeq ($(TORCH),cuda)
ifneq ($(TORCH_INDEX_URL),)
ifneq ($(TORCH_INDEX_URL),$(shell cat $(VENV)/.synthocr-torch-index 2>/dev/null))
.PHONY: $(STAMP)
endif
endif
endif

$(STAMP): pyproject.toml workflow/setup/install_python.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash workflow/setup/install_python.sh
	rm -f $(VENV)/.synthocr-cpu-* $(VENV)/.synthocr-cuda-*
	touch $@

system-deps:
	@bash workflow/setup/install_system.sh

system-deps-test:
	@bash workflow/setup/install_system.sh --test

report: setup
	$(BIN)/python -m models.configcheck --no-files $(CONFIG)
	$(BIN)/snakemake results/crnn_report.csv --profile workflow/profiles/local --cores $(CORES) --configfile $(CONFIG)

all: setup
	$(BIN)/python -m models.configcheck --no-files $(CONFIG)
	$(BIN)/snakemake all --profile workflow/profiles/local --cores $(CORES) --configfile $(CONFIG)

smoke: setup
	$(BIN)/snakemake all --profile workflow/profiles/local --cores $(CORES) --configfile configs/smoke.yaml --directory $(or $(DIR),smoke-run)

test: $(STAMP) system-deps-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/pytest -q --durations=25 tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-fast: setup
	$(BIN)/pytest -q -m "not slow" tests

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check Snakefile workflow/rules

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix . && $(BIN)/snakefmt Snakefile workflow/rules

dag: setup
	$(BIN)/python -m models.configcheck --no-files $(CONFIG)
	$(BIN)/snakemake -n results/crnn_report.csv --configfile $(CONFIG)

clean:
	rm -rf results logs .snakemake
