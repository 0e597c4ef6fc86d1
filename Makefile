# One command each: `make demo` (the main job) and `make test` (the suite). Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.snnlth-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test lint bench clean

setup: $(STAMP)

# torch==2.13.0 first: on this project's machines that pin is a CPU wheel on disk; a loose `torch` would pull a
# multi-GB CUDA build. The package itself only asks for torch>=2.4, so GPU users keep their own build.
# The tests adapt spikingjelly and snntorch networks: spikingjelly goes in with --no-deps (its declared torchvision
# and torchaudio would pull another torch build), plus loguru, which its neurons and layers import, and h5py, which its
# model zoo (spikingjelly.activation_based.model) imports. NeuroBench (the tests compare snnlth's operation counts with
# its own) also goes in with --no-deps: its declared torchaudio, tonic and numba would add 25 packages it does not need
# for its metrics; nirtorch is what spikingjelly's NIR importer runs on (the tests import exported graphs with it).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,nir,cluster]'
	$(BIN)/pip install -q 'snntorch==1.0.0' 'loguru>=0.7,<1' 'h5py>=3'
	$(BIN)/pip install -q --no-deps 'spikingjelly==2.0.0'
	$(BIN)/pip install -q --no-deps 'neurobench==2.3.0' 'nirtorch==2.6'
	@touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist package; never downloaded at run or test time.
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ] || [ -n "$$SNNLTH_DATA" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "Fashion-MNIST is missing: run 'sudo apt-get install -y dataset-fashion-mnist', or put the four IDX .gz" \
	       "files in a directory and set SNNLTH_DATA=DIR"; exit 1; \
	fi

# The main job: IMP and IMP + Early-Time ticket searches on convnet / Fashion-MNIST (configs/demo.toml), then a
# report over both. Rerunning reuses finished searches and resumes interrupted ones.
demo: setup data
	$(BIN)/snnlth search --config configs/demo.toml --out runs/demo/imp
	$(BIN)/snnlth search --config configs/demo.toml --early-time auto --out runs/demo/imp_et
	$(BIN)/snnlth report runs/demo/imp runs/demo/imp_et --out runs/demo/report

test: setup data
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup data
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) runs reports
