# Two entry points (see README): `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv hub-deps browser-deps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The hub: configurable-http-proxy installed repo-locally with npm (no global install), and
# the host tools the spawner drives (bubblewrap's sandbox, setpriv, libseccomp for the
# system-call filter, loop-mounted ext4, useradd).
HUB_PROXY := $(VENV)/node/node_modules/.bin/configurable-http-proxy

$(HUB_PROXY): | $(STAMP)
	@# Many machines ship npm inside the nodejs package; only ask Debian when it is missing.
	@command -v npm >/dev/null 2>&1 || ./scripts/install-system-deps.sh nodejs npm
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error configurable-http-proxy@5.3.0

hub-deps: $(HUB_PROXY)
	@./scripts/install-system-deps.sh bubblewrap libseccomp2 util-linux mount e2fsprogs passwd

# Debian's chromium for the browser test (Playwright drives it; `playwright install` is never run).
browser-deps:
	@./scripts/install-system-deps.sh chromium

demo: $(STAMP) hub-deps
	$(BIN)/enclave demo

test: $(STAMP) hub-deps browser-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .enclave .pytest_cache
