# flowtel — `make demo` and `make test` work on a fresh machine with only Python 3.10+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
DEMO_STORE ?= demo-traces.db

.PHONY: demo test bench lint clean phoenix-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[test]"
	@touch $@ $(VENV)/.core $(VENV)/.demo

$(VENV)/.lint: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[lint]"
	@touch $@ $(VENV)/.core

$(VENV)/.demo: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[openai]"
	@touch $@ $(VENV)/.core

# The main job: a tool-using OpenAI-SDK agent (offline, against a local scripted endpoint unless
# OPENAI_API_KEY is set) traced into the embedded local store, then shown from the terminal.
demo: $(VENV)/.demo
	@rm -f $(DEMO_STORE) $(DEMO_STORE)-wal $(DEMO_STORE)-shm
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(PY) examples/demo.py
	@echo
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(PY) examples/openai_agent.py
	@echo
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(VENV)/bin/flowtel traces list
	@echo
	FLOWTEL_STORE_PATH=$(DEMO_STORE) $(VENV)/bin/flowtel traces show latest

# Arize Phoenix for tests/otel/test_phoenix.py: its own venv (~860 MB), cached across runs.
phoenix-venv: $(VENV)/.test
	$(PY) -c "from tests._servers.phoenix_server import ensure_phoenix_venv; print(ensure_phoenix_venv())"

test: $(VENV)/.test phoenix-venv
	$(PY) -m pytest -q -p no:randomly

# The gate: ruff (configured in pyproject.toml) on everything, mypy --strict on flowtel/.
lint: $(VENV)/.lint
	$(VENV)/bin/ruff check flowtel tests benchmarks examples
	$(VENV)/bin/mypy

bench: $(VENV)/.test
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_STORE)*
