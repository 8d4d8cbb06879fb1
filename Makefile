# Thin wrappers over the CLI and pytest. `make matrix` and `make test` work on a fresh
# Debian/Ubuntu machine: they create .venv and install the project on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 8
# The real MTAs unpacked for this checkout live in .real/ (root's own data folder, /root/..., is
# closed to the unprivileged users Exim and OpenSMTPD drop to); a pip user's live in the XDG data
# folder (`downgrade-lab setup-senders`, docs/senders.md).
export DOWNGRADE_LAB_DATA ?= $(CURDIR)/.real
# matrix: processes, each with JOBS pairs at once (one event loop uses one core). Unset: the
# CLI's default, one per core (at most 4); `make matrix WORKERS=1` keeps one process.
WORKERS ?=

.PHONY: setup bytecode matrix test lint clean real-setup matrix-real real-matrix demo bench fuzz flake \
        conformance dist

setup: $(STAMP)

# The checkout's bytecode, as a wheel install writes it: an editable install writes none where
# PYTHONDONTWRITEBYTECODE is set (as on the project's standard machine), and every start then
# compiles the lab's modules again (about 100 ms a process). Quick when nothing changed.
bytecode: setup
	@$(BIN)/python -m compileall -q lab >/dev/null

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
matrix: bytecode
	@mkdir -p out
	@$(BIN)/downgrade-lab run scenarios -j $(JOBS) $(if $(WORKERS),--workers $(WORKERS)) --json out/matrix.json --junit out/matrix.xml; \
	  rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	  echo "run record: out/matrix.json  (JUnit: out/matrix.xml)"

# Real MTAs under test (issue 4, docs/senders.md): Debian's postfix left unconfigured, Exim
# unpacked and the mailauth driver with its Node packages in the per-user data folder
# (~/.local/share/downgrade-lab, as `downgrade-lab setup-senders` does), postfix-mta-sts-resolver
# (the `real` extra) in .venv. Idempotent and quiet; the Debian parts need root.
real-setup: setup
	@scripts/install-real-senders.sh

# The catalogue against every real sender that can run here, inside a private network
# namespace (--isolate: root, or user namespaces with uidmap). FAIL cells are the senders'
# (docs/senders.md explains each); an ERROR cell is the lab's and fails the target, and the
# per-sender counts are compared with docs/senders.md (a difference is a warning).
real-matrix: real-setup
	@mkdir -p out
	@senders=$$($(BIN)/python -c 'from downgrade_lab.senders.registry import all_senders; print(" ".join( \
	  f"--sender {n}" for n, i in all_senders().items() if i.needs_isolate and i.available()[0]))'); \
	  [ -n "$$senders" ] || { echo "real-matrix: no real sender can run here (downgrade-lab senders)"; exit 2; }; \
	  $(BIN)/downgrade-lab run scenarios --isolate $$senders --json out/matrix-real.json \
	  --junit out/matrix-real.xml; rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	  echo "run record: out/matrix-real.json  (JUnit: out/matrix-real.xml)"
	@$(BIN)/python scripts/real_matrix_check.py out/matrix-real.json docs/senders.md
matrix-real: real-matrix

# The classroom walkthrough (docs/teaching.md): five acts on real lab runs, Enter between acts.
# `make demo DEMO=strip` replays one act; DEMO_HTML=out/demo.html also writes the page.
demo: setup
	$(BIN)/downgrade-lab demo $(DEMO) --pause $(if $(DEMO_HTML),--html $(DEMO_HTML))

# Benchmarks (issue 6, docs/performance.md): scripts, not tests; each prints medians and the
# ratio to its reference. The throughput figure compares with socat as a peer relay.
bench: setup
	@command -v socat >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat; } || \
	  echo "socat not installed: no peer-relay figure"
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/step.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/matrix.py --runs 3 --jobs $(JOBS) $(if $(WORKERS),--workers $(WORKERS))
	$(BIN)/python bench/oneshot.py
	$(BIN)/python bench/up.py
	$(BIN)/python bench/demo.py

# Hostile input, deeper than `make test`: the fuzz tests under the hypothesis `fuzz` profile
# (FUZZ_EXAMPLES per test, default 20000), then atheris on every parser for FUZZ_SECONDS each
# (optional: skipped where atheris does not install).
FUZZ_SECONDS ?= 60
fuzz: setup
	$(BIN)/pytest -q -n 2 --timeout=0 --hypothesis-profile=fuzz tests/test_fuzz.py tests/test_dns_hostile.py
	@$(BIN)/python -c 'import atheris' 2>/dev/null || $(BIN)/pip install -q -e '.[fuzz]' || true
	$(BIN)/python scripts/fuzz_atheris.py all --seconds $(FUZZ_SECONDS)

# The whole catalogue 20 times in one process; lists every verdict that changed between runs.
flake: setup
	$(BIN)/python scripts/flake.py --runs 20 --jobs $(JOBS)

test: bytecode
	$(BIN)/pytest -n 2 -q

# docs/conformance.md from the catalogue (tests/test_coverage.py fails when it is stale).
conformance: setup
	$(BIN)/downgrade-lab coverage scenarios -o docs/conformance.md

# The wheel and the sdist, as a user installs them (tests/test_new_user.py builds them too).
dist: setup
	$(BIN)/python -m build -o dist .

lint: setup
	$(BIN)/ruff check lab tests bench scripts
	$(BIN)/mypy

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
