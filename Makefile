# fraudrules: every target does its own set-up on a fresh machine (Python 3.11, Java 17, Maven, no Docker).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA_PORT ?= 9092
KAFKA_DIR ?= .kafka
DEMO_PORT ?= 39092
BOOTSTRAP := 127.0.0.1:$(KAFKA_PORT)
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# The broker launcher is standard-library Python: it runs before (and without) the virtualenv.
LOCALKAFKA := $(PYTHON) src/fraudrules/kafka_tools/localkafka.py

.PHONY: help install kafka-fetch kafka-up kafka-down test test-fast test-pythons lint demo bench bench-lists bench-cel detection clean browser

help:
	@echo "make demo        local broker + generated data + pipeline + summary"
	@echo "make test        lint, type-check and the whole test suite (starts its own broker); what CI runs"
	@echo "make test-fast   lint, type-check and the tests that need no broker (under a minute)"
	@echo "make test-pythons the tests that need no broker under each of PYTHONS (pyenv versions; CI runs it)"
	@echo "make kafka-up    start a local Kafka broker on $(BOOTSTRAP) (KAFKA_PORT=... to change)"
	@echo "make kafka-down  stop it"
	@echo "make bench       benchmarks on the local broker (see BENCHMARKS.md)"
	@echo "make bench-lists what a list of 1,000,000 values costs: start-up time and memory (see BENCHMARKS.md)"
	@echo "make detection   detection report per generator profile (see DETECTION.md)"

$(BIN)/.installed: pyproject.toml $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

install: $(BIN)/.installed

kafka-fetch:
	$(LOCALKAFKA) fetch

kafka-up:
	$(LOCALKAFKA) up --port $(KAFKA_PORT) --dir $(KAFKA_DIR)

kafka-down:
	$(LOCALKAFKA) down --dir $(KAFKA_DIR)

# Headless Chromium: tests/backtest/test_html.py opens the --html report in a real browser (Debian's package).
browser:
	@command -v chromium >/dev/null || { \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install kafka-fetch lint browser
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: lint browser
	$(BIN)/pytest -m "not kafka" -q $(PYTEST_ARGS)

# The other supported Pythons (pyenv versions), each in a virtualenv of its own: the tests that need no broker.
PYTHONS ?= 3.12.1 3.13.0
test-pythons: browser
	@for v in $(PYTHONS); do \
	  minor=$${v%.*}; \
	  echo "== Python $$v"; \
	  [ -x .venv-$$minor/bin/pytest ] || { PYENV_VERSION=$$v python$$minor -m venv .venv-$$minor && \
	    .venv-$$minor/bin/pip install --quiet --upgrade pip && \
	    .venv-$$minor/bin/pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e $(dir $(p))); } || exit 1; \
	  .venv-$$minor/bin/pytest -m "not kafka" -q -p no:cacheprovider $(PYTEST_ARGS) || exit 1; \
	done

# The demo runs on a broker of its own (fresh data every time), stopped at the end whatever happens.
demo: install kafka-fetch
	$(LOCALKAFKA) up --port $(DEMO_PORT) --dir .kafka-demo --quick-jit
	$(BIN)/fraudrules demo --bootstrap-servers 127.0.0.1:$(DEMO_PORT) $(DEMO_ARGS); \
	  status=$$?; $(LOCALKAFKA) down --dir .kafka-demo; exit $$status

bench: install kafka-fetch
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-lists: install kafka-fetch
	$(BIN)/python benchmarks/lists.py $(BENCH_LISTS_ARGS)

# The CEL package choice (CONTRIBUTING.md): both candidates in a virtualenv of their own, measured side by side.
bench-cel:
	$(PYTHON) -m venv .venv-cel
	.venv-cel/bin/pip install --quiet common-expression-language==0.10.0 cel-python==0.5.0
	.venv-cel/bin/python benchmarks/cel_choice.py

detection: install
	$(BIN)/python benchmarks/detection.py $(DETECTION_ARGS)

clean:
	rm -rf $(VENV) .venv-3.* $(KAFKA_DIR) .kafka-demo .state dist build .pytest_cache .mypy_cache .ruff_cache
