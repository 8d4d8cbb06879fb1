"""Benchmark: two whole commands timed in turn (A B A B ...), each a fresh process, with the
median of each and the median of their ratio taken run by run: a machine that slows down slows
both. This is how docs/performance.md compares a change with the commit before it (the old
tree checked out beside the new one with `git worktree add`). Not a test.

    .venv/bin/python bench/ab.py --runs 21 \\
        --a ".venv/bin/python -m downgrade_lab run scenarios/strip/starttls-enforce-warm.toml" \\
        --b "sh -c 'cd /tmp/old && PYTHONPATH=/tmp/old /path/to/.venv/bin/python -m downgrade_lab run ...'"

Each command is split as a shell splits words and run without a shell (write `sh -c '...'`
for one that needs a `cd` or a pipe), from the project folder, its output discarded. An exit
status other than 0 or 1 (a run with FAIL cells exits 1) stops the benchmark.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children) of one run."""
    before = os.times()
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    except OSError as exc:
        raise SystemExit(f"{shlex.join(argv)}: cannot start: {exc.strerror or exc}") from None
    wall = time.perf_counter() - started
    after = os.times()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(argv)}: exit {proc.returncode}")
    return wall, (after.children_user - before.children_user
                  + after.children_system - before.children_system)


def spread(values: list[float], unit: float = 1.0, fmt: str = "{:.3f}") -> str:
    med, low, high = (fmt.format(v * unit) for v in
                      (statistics.median(values), min(values), max(values)))
    return f"median {med} ({low} / {high})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--a", required=True, help="the command measured")
    ap.add_argument("--b", required=True, help="its reference (the commit before, a yardstick)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs takes a number from 1 up")
    a, b = shlex.split(args.a), shlex.split(args.b)
    if not a or not b:
        ap.error("--a and --b each take a command")
    timed(a), timed(b)  # warm the page cache; not counted
    runs: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for _ in range(args.runs):
        runs["A"].append(timed(a))
        runs["B"].append(timed(b))
    for name in ("A", "B"):
        walls, cpus = [w for w, _ in runs[name]], [c for _, c in runs[name]]
        print(f"{name} wall s: {spread(walls)}; cpu s: {spread(cpus)}")
    wall_ratio = [x[0] / y[0] for x, y in zip(runs["A"], runs["B"], strict=True)]
    cpu_ratio = [x[1] / y[1] for x, y in zip(runs["A"], runs["B"], strict=True) if y[1] > 0]
    print(f"A/B wall, run by run: {spread(wall_ratio, fmt='{:.2f}')}x")
    if cpu_ratio:
        print(f"A/B cpu, run by run: {spread(cpu_ratio, fmt='{:.2f}')}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
