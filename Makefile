# Every target uses (and if needed creates) the project venv in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test bench lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the local CPU build, so no CUDA wheel is pulled.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev,dask,peers,asv]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check pgti_core bench benchmarks tests
	$(BIN)/ruff format --check pgti_core bench benchmarks tests

format: $(STAMP)
	$(BIN)/ruff format pgti_core bench benchmarks tests
	$(BIN)/ruff check --fix pgti_core bench benchmarks tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .asv
