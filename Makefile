# Two commands are the whole set-up: `make demo` and `make test` (see README.md).
# Both create .venv on first use and install everything into it; an install stamp makes a
# second call a no-op.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.e3nn_pyg-installed
QM9_STAMP := $(VENV)/.qm9pack-installed
# torch 2.13.0 CPU lies on this machine's disk; a bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
EXTENSIONS := torch_scatter==2.1.2 torch_cluster==1.6.3

DOCS_STAMP := $(VENV)/.e3nn_pyg-docs-installed
# mace-torch in an environment of its own (it pins e3nn 0.4.4), for bench-learning's MACE runs
MACE_VENV := .venv-mace
MACE_STAMP := $(MACE_VENV)/.mace-installed
MACE := mace-torch==0.3.16

.PHONY: install demo ethanol test test-slow lint bench bench-learning mace-env docs clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@echo ">>> creating $(VENV) and installing $(TORCH) (CPU build)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH)
	@echo ">>> installing e3nn_pyg with torch_geometric and the test tools"
	$(PIP) install -q $(TORCH) -e ".[test,train]"
	@echo ">>> building $(EXTENSIONS) against the installed torch."
	@echo "    They compile from source: 10-20 minutes on 2 cores the first time;"
	@echo "    pip caches the wheels, so later installs take seconds."
	$(PIP) install -q --no-build-isolation $(TORCH) $(EXTENSIONS)
	$(PY) -c "import torch, torch_geometric, torch_scatter, torch_cluster, e3nn_pyg; \
	print('>>> ready: torch', torch.__version__, '| torch_geometric', torch_geometric.__version__)"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	@echo ">>> installing the documentation tools (Sphinx, MyST, Furo)"
	$(PIP) install -q $(TORCH) -e ".[docs]"
	touch $(DOCS_STAMP)

$(MACE_STAMP): Makefile
	@echo ">>> creating $(MACE_VENV) with $(MACE) and $(TORCH) (CPU build)"
	test -x $(MACE_VENV)/bin/python || $(PYTHON) -m venv $(MACE_VENV)
	$(MACE_VENV)/bin/python -m pip install -q --disable-pip-version-check $(TORCH) $(MACE)
	$(MACE_VENV)/bin/mace_run_train --help > /dev/null
	touch $(MACE_STAMP)

mace-env: $(MACE_STAMP)

$(QM9_STAMP): $(STAMP)
	@echo ">>> installing qm9pack (all of QM9 as CSV, about 100 MB)"
	$(PIP) install -q $(TORCH) qm9pack
	touch $(QM9_STAMP)

# The main job: train our model and PyG's SchNet on 3,000 QM9 molecules (4 min each),
# then print the test MAE table and where the plots are. The tutorial runs first.
demo: $(QM9_STAMP)
	$(PY) examples/nuts_and_bolts.py
	$(VENV)/bin/e3nn-pyg train --dataset qm9 --target U0 --num-molecules 3000 \
		--time-budget 240 --baseline schnet --out runs/demo --overwrite

# An interatomic potential on the revised-MD17 ethanol set shipped with the package: our
# many-body model and PyG's SchNet (forces by autograd), 20 minutes each, tested on the 1,000
# MD structures.
ETHANOL := e3nn_pyg/datasets/ethanol
ethanol: $(STAMP)
	$(VENV)/bin/e3nn-pyg train --data $(ETHANOL)/train.xyz --test-data $(ETHANOL)/test_MD.xyz \
		--isolated-atoms $(ETHANOL)/isolated_atoms.xyz --model many-body --baseline schnet \
		--time-budget 1200 \
		--epochs 100000 --patience 100000 --out runs/ethanol --overwrite

# Lint, the fast suite, and the documentation build (which fails on any warning).
test: $(STAMP)
	$(PY) -m ruff check e3nn_pyg tests examples benchmarks docs
	$(PY) -m pytest
	$(MAKE) --no-print-directory docs

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(PY) -m ruff check e3nn_pyg tests examples benchmarks docs
	$(PY) -m ruff format --check e3nn_pyg tests examples benchmarks docs

# The HTML documentation, from scratch every time (-E: autodoc pages follow the code), every
# warning an error; the API pages and figures are generated from the package, offline.
docs: $(DOCS_STAMP)
	$(PY) -m sphinx -b html -E -W --keep-going -n -q -d docs/_build/doctrees docs docs/_build/html
	@echo ">>> documentation: docs/_build/html/index.html"

bench: $(QM9_STAMP) $(MACE_STAMP)
	$(PIP) install -q $(TORCH) e3nn==0.6.0
	$(PY) benchmarks/bench_sh.py
	$(PY) benchmarks/bench_graph.py
	$(PY) benchmarks/bench_conv.py --threads 1 2
	$(PY) benchmarks/bench_chunk.py
	$(PY) benchmarks/bench_model.py --threads 1 2
	$(PY) benchmarks/bench_export.py --threads 1 2
	$(PY) benchmarks/bench_contraction.py --peer-python $(MACE_VENV)/bin/python

# Force MAE against wall-clock seconds on the ethanol split, one thread each, 20 minutes per
# model: ours, PyG's SchNet and MACE (its own mace_run_train, from $(MACE_VENV)); a table,
# runs/bench_learning/learning_curves.png and results.json (see the script's docstring).
# More options: make bench-learning BENCH_ARGS="--parallel 2 --seeds 0 1 2"
bench-learning: $(STAMP) $(MACE_STAMP)
	$(PY) benchmarks/bench_learning.py --budget 1200 --out runs/bench_learning $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(MACE_VENV) .pytest_cache .ruff_cache *.egg-info docs/_build docs/_generated docs/api
