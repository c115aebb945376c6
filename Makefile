# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install install-test demo test

install:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .

install-test: install
	$(PIP) install --quiet -e ".[test]"
	$(PYTHON) -m tps_diffusion.potentials.ani_parameters --install

demo: install
	$(PYTHON) -m tps_diffusion run --config examples/aldp_small.toml --run-dir runs/demo --overwrite

test: install-test
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q -p no:cacheprovider
