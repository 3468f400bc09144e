VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINTED := domain application infrastructure interfaces fixtures tests bench
LOCK := requirements.lock

.PHONY: run test lint typecheck unit install clean browser lock

# The venv is built with a Python 3.11-3.13 that scripts/python finds (python3, or one of
# python3.1x / pyenv's), and filled from the lock file: the same versions on every machine.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || "$$(bash scripts/python)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check || (echo "the lock misses what pyproject.toml asks for: make lock" >&2; exit 1)
	touch $(STAMP)

# Re-resolve the lock from pyproject.toml (one file for Python 3.11-3.13 and every platform).
lock:
	test -x $(PY) || "$$(bash scripts/python)" -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra bench --universal \
		--python-version 3.11 --no-header -q -o $(LOCK)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/publishd run-local

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(VENV)/bin/mypy domain application infrastructure interfaces fixtures

# tests/browser drive Debian's chromium: scripts/chromium finds it, installs it (as root, through
# apt-get) or stops saying how to point PUBLISHD_CHROMIUM at one.
browser:
	@bash scripts/chromium >/dev/null

test: lint typecheck
	chromium="$$(bash scripts/chromium)" && PUBLISHD_CHROMIUM="$$chromium" \
		$(VENV)/bin/pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

clean:
	rm -rf $(VENV) .publishd .mypy_cache .ruff_cache
