# Two commands do all set-up on a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,demo,dev

.PHONY: setup demo test test-all lint format clean

setup: $(STAMP)

# Idempotent: reinstalls only when pyproject.toml changes. pip (not uv) finds the local torch build.
# The install is ~7 GB (torch's CUDA build runs on the CPU too): a full disk is one sentence, not pip's trace.
$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); test -x $(BIN)/python || test "$$free" -ge 7 || \
		{ echo "Only $$free GB free under $$(pwd); the install into .venv needs about 7 GB: free space first." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: setup
	$(BIN)/python sweeps/demo.py --resume --results results/local

test: setup
	$(BIN)/python -m pytest -q -n 2 -m "not slow"
	$(BIN)/python -m pytest -q -m "slow and not extended" --durations=10

# Also the smoke runs of every sweep file (see tests/test_smoke_sweeps.py): before a release.
test-all: test
	$(BIN)/python -m pytest -q -m extended --durations=10

lint: setup
	$(BIN)/ruff check langdml_core tests
	$(BIN)/ruff format --check langdml_core tests

format: setup
	$(BIN)/ruff format langdml_core tests
	$(BIN)/ruff check --fix langdml_core tests

clean:
	rm -rf runs .pytest_cache .ruff_cache
