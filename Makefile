# Two entry points: `make chat` (install, then chat on the shipped model) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

.PHONY: install install-dev chat test test-slow test-browser test-all lint browser-deps

# Stamp files: pip runs again only when pyproject.toml changes, so a second `make chat` starts at once.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

install-dev: $(VENV)/.installed-dev
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

# Ctrl+C is how the tab is stopped, so it is not an error: the shell survives the interrupt (its trap runs
# instead of the default, which would end it and make make print "*** Interrupt"), and exit 130 counts as 0.
chat: install
	@trap true INT; $(BIN)/chatbot serve || [ $$? -eq 130 ]

# The quick tier: CPU only, no real data, no browser.
test: install-dev
	$(BIN)/python -m pytest -q

test-slow: install-dev
	$(BIN)/python -m pytest -q -m slow

# The real server driven by gradio_client, and the chat tab in headless Chromium. The screenshot goes to a
# temp folder; UPDATE_SCREENSHOT=1 make test-browser rewrites the README's docs/chat_tab.png.
test-browser: browser-deps
	$(BIN)/python -m pytest -q -m browser

# What the browser tests need: Playwright for Python (a dev extra) and Debian's Chromium at /usr/bin/chromium
# (Playwright's own browser download is not used; it needs a network these machines do not have).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps: install-dev
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null)
	@$(BIN)/python -c "import playwright.sync_api" && /usr/bin/chromium --version

lint: install-dev
	$(BIN)/ruff check .
