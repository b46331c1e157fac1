# geoae: two commands on a fresh machine.
#   make reproduce   create .venv, install geoae, run the paper's experiments (quick profile) -> results/
#   make test        install the dev extras (and Chromium for the explorer's browser test), run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned here (not in pyproject) so that a plain `pip install -e .` keeps the user's own torch;
# 2.13.0 is the CPU wheel this project is developed and tested with.
TORCH  := torch==2.13.0
PROFILE ?= quick

.PHONY: reproduce test bench lint clean browser

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -e . $(TORCH)
	touch $@

# the dev extras and the optional integrations that the tests exercise (TensorBoard, MLflow, and Ray: the
# cluster tests of tests/test_ray_executor.py start a two-node Ray on this machine)
$(VENV)/.stamp-dev: $(VENV)/.stamp-base
	$(PIP) install -q --disable-pip-version-check -e '.[dev,tensorboard,mlflow,ray]' $(TORCH)
	touch $@

reproduce: $(VENV)/.stamp-base
	$(VENV)/bin/geoae reproduce --profile $(PROFILE) --out results

test: $(VENV)/.stamp-dev browser
	$(PY) -m pytest -q

# Debian's chromium + chromium-driver for tests/test_explorer.py, installed with apt-get where it is there and
# we are root (the CI); never fails: without a browser those tests skip with the reason.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "make browser: apt-get could not install chromium; tests/test_explorer.py will skip"; \
	else echo "make browser: no chromium/chromedriver and no apt-get as root; tests/test_explorer.py will skip"; fi

bench: $(VENV)/.stamp-base
	$(VENV)/bin/geoae bench

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) results build src/*.egg-info
