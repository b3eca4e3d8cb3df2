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

# System tools: curl (a test bootstrap speaks the Runtime API with it), setpriv (util-linux),
# chromium (the console's browser test drives Debian's Chromium with Playwright) and
# awscli (Debian's is AWS CLI v2, /usr/bin/aws: `aws logs tail`, which PyPI's v1 lacks).
system-packages:
	@command -v curl >/dev/null && command -v setpriv >/dev/null && \
		command -v chromium >/dev/null && test -x /usr/bin/aws || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			curl util-linux chromium awscli; }

serve: $(VENV)/.installed
	$(BIN)/lamina serve

test: $(VENV)/.installed-test system-packages
	$(BIN)/python -m pytest -q

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(VENV)/.installed $@

# Benchmarks against baselines measured in the same run (bench/run.py, about 2 minutes);
# wrk, from Debian's packages, drives the warm-invoke load. Writes bench/results.json.
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check lamina tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .lamina
