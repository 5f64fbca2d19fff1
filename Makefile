# flowtel — `make demo` and `make test` work on a fresh machine with only Python 3.10+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
DEMO_STORE ?= demo-traces.db

.PHONY: demo ui test browser-deps phoenix-venv bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[test,lint]"
	@touch $@ $(VENV)/.core $(VENV)/.demo

# mypy checks flowtel against the libraries it integrates with, so the gate has them too.
$(VENV)/.lint: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[test,lint]"
	@touch $@ $(VENV)/.core $(VENV)/.test $(VENV)/.demo

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
	@echo
	@echo "See these traces in the MLflow UI (span waterfall, chat view, tokens, sessions): make ui"
	@echo "  (that is: pip install 'flowtel[ui]' && flowtel --store $(DEMO_STORE) ui)"

$(VENV)/.ui: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e ".[ui]"
	@touch $@ $(VENV)/.core

# The real MLflow UI on the demo's traces (a private server on 127.0.0.1; Ctrl-C stops it).
ui: $(VENV)/.ui
	$(VENV)/bin/flowtel --store $(DEMO_STORE) ui

# The MLflow versions the server tests run against (3.17.2 is in the venv; others get a cached
# venv under ~/.cache/flowtel-tests, made once here so no test waits on pip).
# Arize Phoenix for tests/otel/test_phoenix.py: its own venv (~860 MB), cached across runs.
phoenix-venv: $(VENV)/.test
	$(PY) -c "from tests._servers.phoenix_server import ensure_phoenix_venv; print(ensure_phoenix_venv())"

test: $(VENV)/.test browser-deps phoenix-venv
	$(PY) -m tests._servers.mlflow_versions
	$(PY) -m pytest -q -p no:randomly

# Headless Chromium for the browser tests (Debian's package); without root apt-get those tests
# skip and say why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: no Chromium (and no root apt-get to install it): the browser tests will be skipped."; \
	  fi; }

# The gate: ruff (configured in pyproject.toml) on everything, mypy --strict on flowtel/.
lint: $(VENV)/.lint
	$(VENV)/bin/ruff check flowtel tests benchmarks examples
	$(VENV)/bin/mypy

bench: $(VENV)/.test
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_STORE)*
