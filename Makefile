# H-Neurons workbook. `make reproduce` = the main job; `make test` = the whole test suite (what CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
PROFILE ?= default
PYTEST_ARGS ?=

.PHONY: env test test-fast smoke reproduce figures lab view data-check clean-results help
help:
	@echo "make reproduce   - set up, fetch model and data, run every notebook with params/default.yaml"
	@echo "make test        - set up and run the whole test suite (incl. real models and the notebook smoke run)"
	@echo "make test-fast   - unit tests on the tiny in-code model only (seconds)"
	@echo "make smoke       - run every notebook with params/smoke.yaml (results/smoke/)"
	@echo "make figures     - re-draw every figure from saved results (no model needed)"
	@echo "make lab         - JupyterLab at the repository root on the project's own kernel (results/default/ one click away)"
	@echo "make view        - read the executed notebooks in JupyterLab alone (no torch, no model: .venv-view/)"

$(STAMP):
	@$(PYTHON_BOOT) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required (torch 2.13.0 CPU wheel), found {sys.version.split()[0]}"'
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==23.2.1 2>&1 | grep -v "is ignored" || true
	# torch first and alone: on a CPU-only machine this picks the local CPU wheel (no CUDA download).
	$(PY) -m pip install --quiet torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	$(PY) -c 'import torch, transformers, nnsight, papermill, sklearn, seaborn, hneuron_utils; print("environment ok: torch", torch.__version__, "transformers", transformers.__version__, "nnsight", nnsight.__version__)'
	$(PY) -c 'from hneuron_utils.workbook.run import ensure_kernel; ensure_kernel()'  # the project kernel, logging errors only
	rm -f $(VENV)/.installed-*
	touch $@

env: $(STAMP)

test: env
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest -ra -m "not network and not real_model and not notebooks" $(PYTEST_ARGS)

smoke: env
	$(PY) -m hneuron_utils.workbook.run --params params/smoke.yaml

reproduce: env
	$(PY) -m hneuron_utils.workbook.run --params params/$(PROFILE).yaml
	if [ "$(PROFILE)" = default ]; then $(PY) -m hneuron_utils.workbook.report --update-readme; fi

figures: env
	$(PY) -m hneuron_utils.workbook.figures --run results/default

data-check: env
	$(PY) -m hneuron_utils.data.build triviaqa --check
	$(PY) -m hneuron_utils.data.build biomed --check
	$(PY) -m hneuron_utils.data.build medmc --check
	$(PY) -m hneuron_utils.data.build overcompliance --check

lab: env
	$(VENV)/bin/jupyter lab --notebook-dir=. $(ROOT_FLAG)

# JupyterLab refuses to run as root unless told (containers often run as root)
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# Reading the committed results needs JupyterLab only: a small environment of its own, pinned like the main one.
VIEW_VENV ?= .venv-view
$(VIEW_VENV)/.installed:
	$(PYTHON_BOOT) -m venv $(VIEW_VENV)
	$(VIEW_VENV)/bin/python -m pip install --quiet -c constraints.txt jupyterlab
	touch $@

view: $(VIEW_VENV)/.installed
	$(VIEW_VENV)/bin/jupyter lab --notebook-dir=results/default $(ROOT_FLAG)

clean-results:
	rm -rf results/smoke
