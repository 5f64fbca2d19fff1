# flowtel — `make demo` and `make test` work on a fresh machine with only Python 3.10+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
DEMO_STORE ?= demo-traces.db

.PHONY: demo test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[test]"
	@touch $@ $(VENV)/.core

demo: $(VENV)/.test
	@rm -f $(DEMO_STORE) $(DEMO_STORE)-wal $(DEMO_STORE)-shm
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(PY) examples/demo.py
	@echo
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(VENV)/bin/flowtel traces list
	@echo
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(VENV)/bin/flowtel traces show latest

test: $(VENV)/.test
	$(PY) -m pytest -q -p no:randomly

bench: $(VENV)/.test
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_STORE)*
