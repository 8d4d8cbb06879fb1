"""Benchmark: one two-step scenario as a fresh process, as a user runs it, beside the floor
process measured in the same run (`python bench/floor.py 4`: the interpreter, the same
libraries, a CA and four TLS deliveries). Issue 15's target: <= 1.5x.

The two commands alternate (A B A B ...) and the ratio is taken round by round, so a machine
that slows down slows both. Not a test: figures go to docs/performance.md.

    .venv/bin/python bench/oneshot.py [--runs 11] [--scenario scenarios/strip/starttls-enforce-warm.toml]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--scenario", default="scenarios/strip/starttls-enforce-warm.toml")
    ap.add_argument("--sender", default="reference")
    args = ap.parse_args()
    run = [sys.executable, "-m", "downgrade_lab", "run", args.scenario, "--sender", args.sender]
    floor = [sys.executable, str(ROOT / "bench" / "floor.py"), "4"]
    timed(run), timed(floor)  # warm the page cache; not counted
    runs: list[float] = []
    floors: list[float] = []
    for _ in range(args.runs):
        runs.append(timed(run))
        floors.append(timed(floor))
    ratios = [a / b for a, b in zip(runs, floors, strict=True)]
    ratio = statistics.median(ratios)
    print(f"{' '.join(run[1:])}: median {statistics.median(runs) * 1000:.0f} ms "
          f"({min(runs) * 1000:.0f} / {max(runs) * 1000:.0f})")
    print(f"floor process, bench/floor.py 4: median {statistics.median(floors) * 1000:.0f} ms "
          f"({min(floors) * 1000:.0f} / {max(floors) * 1000:.0f})")
    print(f"ratio, round by round: median {ratio:.2f}x (min {min(ratios):.2f}, max "
          f"{max(ratios):.2f}); target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
