# Two commands set up everything on a fresh machine with Python 3.11:
#   make demo   — bootstrap .venv, run the planted-tell demo, write out/demo/report.html
#   make test   — bootstrap .venv, run ruff (lint + format check) and the test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test bench bccd power lint clean browser

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "leakaudit needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,ray]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/leakaudit demo --out out/demo

test: venv lint browser
	$(BIN)/python -m pytest

# tests/test_browser.py opens real reports in headless Chromium (skipped without it unless CI is
# set). Debian's package is installed when missing; this needs root (CI containers run as root).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium) \
	  || echo "warning: could not install chromium; tests/test_browser.py skips (fails when CI is set)"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/leakaudit bench --out out/bench

bccd: venv
	bash examples/bccd_audit.sh

digits: venv
	$(BIN)/python examples/digits_insight.py --out out/digits

power: venv
	$(BIN)/leakaudit power --out out/power

clean:
	rm -rf out .pytest_cache .ruff_cache
