# Two set-up commands (README): `make serve` and `make test`. Both work on a fresh Debian machine
# as root. The interpreter: PY=/path/to/python3.X, or the first supported one found (tools/venv.sh),
# and a .venv made by an unsupported or vanished Python is made anew.
PY ?=
SUPPORTED := 3.11 3.12 3.13
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
VENV_SH = PY="$(PY)" SUPPORTED="$(SUPPORTED)" sh tools/venv.sh $(VENV)

.PHONY: serve cluster test test-repeat lint format system-deps venv venv-test clean

# serve also installs the load tester's extra, so `.venv/bin/roomserver-loadtest` works too,
# and the assistant's (jieba and the embedding model, docs/assistant.md).
venv:
	@$(VENV_SH) '.[loadtest,assistant]' $(VENV)/.installed

venv-test:
	@$(VENV_SH) '.[test,loadtest,assistant]' $(VENV)/.installed $(VENV)/.installed-test

serve: venv
	$(BIN)/roomserver serve --host $(HOST) --port $(PORT)

# NODES servers on PORT, PORT+1, … sharing a Redis: REDIS_URL=redis://… names one, else one is
# started on REDIS_PORT (tools/cluster.sh).
NODES ?= 2
REDIS_PORT ?= 6390
cluster: venv
	@BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) NODES=$(NODES) REDIS_PORT=$(REDIS_PORT) REDIS_URL=$(REDIS_URL) \
		bash tools/cluster.sh

# Debian packages the tests need (we are root; CI runs on a fresh clone). libicu-dev,
# pkg-config and g++ build PyICU, which regenerates the word filter's table; serving needs none.
system-deps:
	@need=""; \
	command -v redis-server >/dev/null || need="$$need redis-server"; \
	command -v chromium >/dev/null || need="$$need chromium chromium-driver"; \
	pkg-config --exists icu-i18n 2>/dev/null && command -v g++ >/dev/null || need="$$need libicu-dev pkg-config g++"; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need; \
	fi

test: system-deps venv-test
	$(BIN)/ruff check roomserver loadtest tests
	$(BIN)/ruff format --check roomserver loadtest tests
	$(BIN)/pytest -q
	$(BIN)/python -m tests.repeat_check

# The timing-sensitive tests again, several times, with one core kept busy (docs/testing.md).
test-repeat: venv-test
	$(BIN)/python -m tests.repeat_check

lint: venv-test
	$(BIN)/ruff check roomserver loadtest tests

format: venv-test
	$(BIN)/ruff format roomserver loadtest tests
	$(BIN)/ruff check --fix roomserver loadtest tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
