# Two commands set up a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench system-packages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

# System tools: curl (a test bootstrap speaks the Runtime API with it), setpriv (util-linux).
system-packages:
	@command -v curl >/dev/null && command -v setpriv >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq curl util-linux; }

serve: $(VENV)/.installed
	$(BIN)/lamina serve

test: $(VENV)/.installed-test system-packages
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check lamina tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lamina
