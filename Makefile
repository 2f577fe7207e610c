# `make demo` and `make test` each create .venv on first use, install, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,openvino]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgecnn inspect resnet18

test: $(STAMP)
	$(BIN)/python -m ruff check edgecnn tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/python -m ruff check edgecnn tests benchmarks
	$(BIN)/python -m ruff format --check edgecnn tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
