# Two commands on a fresh Linux machine with Python 3.11+:
#   make demo   - create .venv, install, run the demo (controller + ~20 agents), leave nothing running
#   make test   - install what the tests need (system packages included) and run the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test install install-test sysdeps protos protos-check lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[controller]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[controller,test]'
	touch $@ $(STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP) sysdeps

# nftables, dnsmasq, openssh-server, conntrack and iproute2 for the namespace and Ansible tests.
sysdeps:
	@bash .ci/sysdeps.sh

demo: $(STAMP)
	$(VENV)/bin/msspctl demo

protos: $(TEST_STAMP)
	$(PY) protos/generate.py

protos-check: $(TEST_STAMP)
	$(PY) protos/generate.py --check

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ansible-lint --offline --profile production playbooks/

test: install-test protos-check lint
	$(VENV)/bin/pytest

bench: $(TEST_STAMP)
	$(PY) bench/propagation.py

clean:
	rm -rf $(VENV) build *.egg-info
