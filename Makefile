# Two set-up commands (README): `make serve` and `make test`. Both work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: serve test lint format system-deps smoke clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,loadtest]'
	touch $(VENV)/.installed $@

serve: $(VENV)/.installed
	$(BIN)/roomserver serve --host $(HOST) --port $(PORT)

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

test: system-deps $(VENV)/.installed-test
	$(BIN)/ruff check roomserver loadtest tests
	$(BIN)/ruff format --check roomserver loadtest tests
	$(BIN)/pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check roomserver loadtest tests

format: $(VENV)/.installed-test
	$(BIN)/ruff format roomserver loadtest tests
	$(BIN)/ruff check --fix roomserver loadtest tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
