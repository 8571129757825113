# Two commands: `make up` runs the service on this machine, `make test` runs every test.
# Both build the virtual environment they need first (only when pyproject.toml changed).

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: up test lint bench-embed bench-search clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip "setuptools<81" wheel
	$(VENV)/bin/pip install --quiet -e ".[ml,dev]"
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/assetrag up

test: $(STAMP)
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy api workers shared cli
	$(VENV)/bin/pytest -q

bench-embed: $(STAMP)
	$(VENV)/bin/python bench/embed_throughput.py

bench-search: $(STAMP)
	$(VENV)/bin/python bench/search_latency.py

clean:
	rm -rf $(VENV) test-output .pytest_cache .mypy_cache .ruff_cache
