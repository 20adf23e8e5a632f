# cookiematch: `make demo` and `make test` work on a fresh machine (they set everything up).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint check system-deps reference-encoders bench clean vendor-uplot

# `sync` last: the install leaves ~1 GB of written pages in memory, and while the kernel writes
# them back an fsync can stall for hundreds of ms, past the 50-300 ms store deadlines of the
# demo's and the tests' first requests (docs/storage.md, "Disk flushes and store deadlines")
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,redis,spark]'
	sync
	touch $(STAMP)

## system packages the tests need (redis-server, chromium, node); installed only when missing
system-deps:
	bash scripts/install-system-deps.sh

## the IAB's reference encoders (npm) the consent decoders are tested against
REFERENCE := tests/reference
$(REFERENCE)/node_modules/.package-lock.json: $(REFERENCE)/package.json $(REFERENCE)/package-lock.json
	npm ci --prefix $(REFERENCE) --no-audit --no-fund --loglevel=error

reference-encoders: system-deps $(REFERENCE)/node_modules/.package-lock.json

## run the whole story locally on the embedded store
demo: $(STAMP)
	$(BIN)/cookiematch demo

## lint, type-check and run every test
test: $(STAMP) system-deps reference-encoders lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	WITH_BENCH=1 bash scripts/install-system-deps.sh && bash bench/run.sh

## refresh the console's vendored chart library from npm (VERSION=... to change it)
vendor-uplot:
	bash scripts/vendor-uplot.sh $(VERSION)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var $(REFERENCE)/node_modules
