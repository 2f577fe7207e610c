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

# The whole job on the built-in default: ResNet-18 on the bundled MNIST digits at 32x32 -> one student
# per runtime from `compress` (1.3x faster planned on ONNX Runtime, and on OpenVINO), distilled ->
# ONNX / OpenVINO fp32 + int8 -> benchmark table and plot in export/resnet18/pipeline/.
demo: $(STAMP)
	$(BIN)/edgecnn pipeline resnet18 --data digits --input-size 32 --epochs 3 --distill-epochs 2 --speedup 1.3 --force

test: $(STAMP)
	$(BIN)/python -m ruff check edgecnn tests benchmarks
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/python -m ruff check edgecnn tests benchmarks
	$(BIN)/python -m ruff format --check edgecnn tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
