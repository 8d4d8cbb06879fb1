# Thin wrappers over the CLI and pytest. `make matrix` and `make test` work on a fresh
# Debian/Ubuntu machine: they create .venv and install the project on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 4

.PHONY: setup matrix test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	  else echo "python3 cannot make a venv: install python3-venv (sudo apt-get install python3-venv)"; exit 2; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

# The scenario catalogue against the built-in senders. Exit status 1 only means some cell is
# FAIL, which the vulnerable `opportunistic` sender shows on purpose; 2 is a real error.
matrix: setup
	@mkdir -p out
	@$(BIN)/downgrade-lab run scenarios -j $(JOBS) --json out/matrix.json --junit out/matrix.xml; \
	  rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	  echo "run record: out/matrix.json  (JUnit: out/matrix.xml)"

test: setup
	$(BIN)/pytest -n 2 -q

lint: setup
	$(BIN)/ruff check lab tests
	$(BIN)/mypy

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
