# One-command entry points (see README). Each creates the virtual environment if it is missing.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: env test demo clean-env

env: $(STAMP)

# Re-installs when the packaging changes. torch/torchvision are resolved by pip through nnunetv2
# (never pinned here): on CPU-only machines the matched pair torch 2.14.1 + torchvision 0.29.1 works.
$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e '.[test,demo]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m nnunet_anomaly demo

clean-env:
	rm -rf $(VENV)
