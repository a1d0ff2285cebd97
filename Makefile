# The README's commands. Each target creates/reuses .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FMNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= runs/demo

.PHONY: demo test bench bench-full install fmnist lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[cpu,test]' --config-settings editable_mode=compat
	touch $(STAMP)

# Debian's Fashion-MNIST (the four IDX .gz files) for the offline data path.
fmnist:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FMNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; \
	else \
	  echo "apt-get not available: Fashion-MNIST will be fetched by tfds instead"; \
	fi

# Main job: train rec-LRA on Fashion-MNIST, evaluate on the test split, save, export.
demo: $(STAMP) fmnist
	$(PY) -m trainers.train --preset=fmnist_mlp --workdir=$(DEMO_DIR) --overwrite
	@if [ -f export/__main__.py ]; then \
	  $(PY) -m export --model=$(DEMO_DIR)/model.keras --formats=savedmodel,onnx,tflite --tflite_quantize=int8 \
	    --out=$(DEMO_DIR)/export --overwrite; fi

test: $(STAMP) fmnist
	$(PY) -m pytest -q -ra tests

bench: $(STAMP) fmnist
	$(PY) -m benchmarks.run --suite=quick

bench-full: $(STAMP) fmnist
	$(PY) -m benchmarks.run --suite=full

clean:
	rm -rf $(VENV) runs build *.egg-info
