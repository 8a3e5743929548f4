# Two entry points for a fresh Debian 12 machine: `make run` and `make test`.
# Both create .venv at the repo root and install what they need (system packages via apt-get
# when a binary is missing; run as root or with sudo available).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RUN_TOOLS  := espeak-ng:espeak-ng sox:sox
TEST_TOOLS := $(RUN_TOOLS) sipp:sip-tester baresip:baresip-core chromium:chromium \
              kamailio:kamailio /usr/lib/postgresql/15/bin/initdb:postgresql \
              linphonec:linphone-cli ip:iproute2 wrk:wrk \
              faketime:faketime

.PHONY: run test soak lint bench-ui system-run system-test clean

# tool:package pairs -> apt-get install the packages whose tool is missing
define apt_install
	@missing=""; for pair in $(1); do tool=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

system-run:
	$(call apt_install,$(RUN_TOOLS))

system-test:
	$(call apt_install,$(TEST_TOOLS))

## make run: migrate the SQLite database, seed the demo clinic and admin, generate prompts, then
## run the call server and the staff UI (two processes; Ctrl-C stops both)
run: system-run $(VENV)/.run-installed
	$(BIN)/callserver migrate
	$(BIN)/callserver seed-demo
	$(BIN)/callserver generate-prompts
	@$(BIN)/callserver web & web=$$!; \
	trap 'kill $$web 2>/dev/null; wait $$web' EXIT; \
	trap 'exit 130' INT TERM; \
	$(BIN)/callserver serve

## make test: install test peers and Python test deps, lint, run the whole suite
test: system-test $(VENV)/.test-installed lint
	$(BIN)/pytest -q -ra -m "not soak" --durations=30

## make soak: the long fault and load tests (minutes each), kept out of `make test`
soak: system-test $(VENV)/.test-installed
	$(BIN)/pytest -q -ra -m soak

## make lint: ruff (style) and mypy (types; strict on ivr_flows, transcription, callbacks)
lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## make bench-ui: the staff UI's work queue with 100,000 tickets under wrk (bench/README.md)
bench-ui: system-test $(VENV)/.test-installed
	flock /tmp/cpu.lock $(BIN)/python bench/ui/bench_ui.py --results bench/ui/results.jsonl

clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
