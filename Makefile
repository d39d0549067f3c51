# Two entry points: `make chat` (install, then chat on the shipped model) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

.PHONY: install install-dev chat test test-slow test-browser test-all lint browser-deps

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"

chat: install
	$(BIN)/chatbot serve

# The quick tier: CPU only, no real data, no browser.
test: install-dev
	$(BIN)/python -m pytest -q

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

test-browser: install-dev browser-deps
	$(BIN)/python -m pytest -q -m browser

# Debian's Chromium for the browser tests (Playwright's own browser download is not used).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

lint: install-dev
	$(BIN)/ruff check .
