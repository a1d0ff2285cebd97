# The README's commands. Each target creates/reuses .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FMNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= runs/demo

# Against BioTorch (benchmarks/peers/): the benchmark-only extra `peers` (BioTorch, torch
# 2.14.1 and torchvision, ~6.5 GB) goes into a venv of its own, never into .venv: it brings
# tensorboard, which would switch the trainer to Keras' TensorBoard callback (BUILD_NOTES.md).
PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
PEERS_ARGS ?=

.PHONY: demo test bench bench-full bench-peers install fmnist lint clean

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

# The benchmark suites of benchmarks/registry.py, then BENCHMARKS.md (benchmarks/README.md).
bench: $(STAMP) fmnist
	$(PY) -m benchmarks.run --suite=quick

bench-full: $(STAMP) fmnist
	$(PY) -m benchmarks.run --suite=full

$(PEERS_STAMP): pyproject.toml
	test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --upgrade pip
	$(PEERS_PY) -m pip install -e '.[peers]' --config-settings editable_mode=compat
	touch $(PEERS_STAMP)

# Trains and times BioTorch's and our ResNet-20 side by side (about 1.5 h on 2 cores), writes
# benchmarks/results/peers_biotorch.json and .png, then regenerates BENCHMARKS.md.
bench-peers: $(STAMP) $(PEERS_STAMP) fmnist
	$(PY) -m benchmarks.peers.biotorch --torch_python=$(PEERS_PY) $(PEERS_ARGS)
	$(PY) -m benchmarks.run --report_only

clean:
	rm -rf $(VENV) $(PEERS_VENV) runs build *.egg-info
