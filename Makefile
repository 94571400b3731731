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

.PHONY: generate serve cluster test test-faults test-repeat lint typecheck format system-deps venv venv-test js-deps js-check clean

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
# fonts-noto-cjk: the Chinese pages' screenshots (without a CJK font Chromium draws boxes).
# postgresql: the analytics store's PostgreSQL tests start a private server from its binaries.
# GStreamer (webrtcbin, libnice, VP8/x264/openh264, python3-gi for /usr/bin/python3): the second
# WebRTC stack of tests/media/test_gstreamer_interop.py. coturn: the TURN tests start one;
# iproute2: they put a viewer in its own network namespace (ip netns, as root).
GSTREAMER_PACKAGES := python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 \
	gir1.2-nice-0.1 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-nice
system-deps:
	@need=""; \
	command -v redis-server >/dev/null || need="$$need redis-server"; \
	command -v chromium >/dev/null || need="$$need chromium chromium-driver"; \
	pkg-config --exists icu-i18n 2>/dev/null && command -v g++ >/dev/null || need="$$need libicu-dev pkg-config g++"; \
	command -v node >/dev/null && command -v npm >/dev/null || need="$$need nodejs npm"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || need="$$need fonts-noto-cjk"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	/usr/bin/python3 -c "import gi; gi.require_version('GstWebRTC', '1.0'); gi.require_version('Nice', '0.1')" 2>/dev/null \
		&& ls /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstx264.so >/dev/null 2>&1 \
		|| need="$$need $(GSTREAMER_PACKAGES)"; \
	command -v turnserver >/dev/null || need="$$need coturn"; \
	test -x /usr/sbin/ip || need="$$need iproute2"; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need; \
	fi

test: system-deps venv-test js-check
	$(BIN)/ruff check roomserver loadtest tests
	$(BIN)/ruff format --check roomserver loadtest tests
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=25
	$(BIN)/python -m tests.repeat_check

# Fault tests (tests/faults/, about two minutes): kill -9 of a node in a barrage storm, Redis slow
# or out of memory under a flood of ops, a node partitioned by its network namespace's link going
# down (as root: ip netns). `-m faults` overrides addopts' `-m 'not faults'`.
test-faults: system-deps venv-test
	$(BIN)/pytest -q -m faults tests/faults

# The timing-sensitive tests again, several times, with one core kept busy (docs/testing.md).
test-repeat: venv-test
	$(BIN)/python -m tests.repeat_check

lint: venv-test
	$(BIN)/ruff check roomserver loadtest tests

# mypy over roomserver/ and loadtest/ ([tool.mypy] in pyproject.toml).
typecheck: venv-test
	$(BIN)/mypy

format: venv-test
	$(BIN)/ruff format roomserver loadtest tests
	$(BIN)/ruff check --fix roomserver loadtest tests

# The JavaScript: ESLint and tsc --noEmit (docs/sdk-js.md, "Checks"). The tools are npm
# packages pinned by tools/js/package-lock.json; `npm ci` runs only when node_modules is
# missing or older than the lock.
JS := tools/js
JSBIN := $(JS)/node_modules/.bin
js-deps: $(JS)/node_modules/.installed

$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	@touch $@

js-check: js-deps
	$(JSBIN)/eslint -c $(JS)/eslint.config.js web_client sdk-node $(JS)
	$(JSBIN)/tsc -p $(JS)/tsconfig.web.json
	$(JSBIN)/tsc -p $(JS)/tsconfig.node.json
	node $(JS)/check-surface.js
	cd web_client/sdk && npm pack --dry-run --silent >/dev/null
	cd sdk-node && npm pack --dry-run --silent >/dev/null

# Every checked-in file made from code (tests fail when one is stale).
generate: venv-test
	$(BIN)/python -m roomserver.contract.generate
	$(BIN)/python -m roomserver.configload
	$(BIN)/python -m roomserver.metrics

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(JS)/node_modules
