"""Benchmark: `downgrade-lab demo`, the four acts of the classroom walkthrough end to end, in
process (as tests/test_demo.py runs it). docs/teaching.md promises about a second; target:
under 10 s, since no act may wait out a step's deadline (10 s by default).

    .venv/bin/python bench/demo.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import sys
import time

from _common import machine, spread, verdict

from downgrade_lab.frontends.cli import Environment
from downgrade_lab.frontends.cli import main as cli

TARGET_S = 10.0


def once() -> float:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = cli(["demo"], Environment(stdout=out, stderr=err, stdin=io.StringIO("")))
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"demo: exit {code}: {err.getvalue().strip()}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = [once() for _ in range(args.runs)]
    print(f"machine: {machine()}")
    print(f"demo, four acts: {spread(runs)}  target < {TARGET_S:g} s: {verdict(max(runs) < TARGET_S)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
