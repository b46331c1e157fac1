# geoae: two commands on a fresh machine.
#   make reproduce   create .venv, install geoae, run the paper's experiments (quick profile) -> results/
#   make test        install the dev extras, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned here (not in pyproject) so that a plain `pip install -e .` keeps the user's own torch;
# 2.13.0 is the CPU wheel this project is developed and tested with.
TORCH  := torch==2.13.0
PROFILE ?= quick

.PHONY: reproduce test bench lint clean

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e . $(TORCH)
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base
	$(PIP) install -q -e '.[dev]' $(TORCH)
	touch $@

reproduce: $(VENV)/.stamp-base
	$(VENV)/bin/geoae reproduce --profile $(PROFILE) --out results

test: $(VENV)/.stamp-dev
	$(PY) -m pytest -q

bench: $(VENV)/.stamp-base
	$(VENV)/bin/geoae bench

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) results build src/*.egg-info
