"""Benchmark: the whole catalogue x the built-in senders, as `make matrix` runs it, beside its
reference measured in the same run: one floor delivery (bench/floor.py, aiosmtplib -> aiosmtpd
over TLS on loopback) times the catalogue's steps. Issue 15's target: wall <= 2.5x that.

Each round runs the floor script (`python bench/floor.py 30`, a fresh process printing its
median per delivery), the matrix (a fresh process, as a user sees it, with `make matrix`'s
`-j` and `--workers`) and the floor again; the ratio to the mean of the two floors is taken
round by round, so a machine that slows down slows both. Not a test: figures go to
docs/performance.md.

    .venv/bin/python bench/matrix.py [--runs 5] [--jobs 8] [--workers P]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = ROOT / "bench" / "floor.py"
TARGET = 2.5


def floor_delivery(rounds: int = 30) -> float:
    """Median seconds of one floor delivery, from a fresh `bench/floor.py` process."""
    out = subprocess.run([sys.executable, str(FLOOR), str(rounds)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None,
                    help="processes (default: the CLI's, one per core as make matrix)")
    args = ap.parse_args()
    walls: list[float] = []
    floors: list[float] = []
    ratios: list[float] = []
    steps: list[float] = []
    pairs = n_steps = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            before = floor_delivery()
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "downgrade_lab", "run", "scenarios", "-j", str(args.jobs),
                 *(["--workers", str(args.workers)] if args.workers else []), "--json", str(out),
                 "--junit", str(out.with_suffix(".xml"))],  # the report files make matrix writes
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wall = time.perf_counter() - started
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
                return 2
            floor = (before + floor_delivery()) / 2
            record = json.loads(out.read_text())
            pairs = len(record["results"])
            n_steps = sum(len(r["steps"]) for r in record["results"])  # SKIP pairs have none
            for r in record["results"]:
                if r["verdict"] == "ERROR":  # the lab failed, not the sender: say where and why
                    print(f"  ERROR {r['scenario']} x {r['sender']}: {r['reason']}")
            for r in record["results"]:
                n = max(1, len(r["steps"]))
                steps += [r["duration_s"] / n] * n
            walls.append(wall)
            floors.append(floor)
            ratios.append(wall / (n_steps * floor))
            print(f"run {i + 1}: {wall:.2f} s wall ({record['summary']}); floor delivery "
                  f"{floor * 1000:.2f} ms, {n_steps} steps x floor = {n_steps * floor:.2f} s; "
                  f"ratio {ratios[-1]:.2f}x")
    ratio = statistics.median(ratios)
    print(f"pairs (scenario x sender): {pairs}, steps: {n_steps}")
    print(f"wall time: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s, "
          f"max {max(walls):.2f} s over {args.runs} runs (-j {args.jobs}, "
          f"--workers {args.workers or 'default'})")
    print(f"floor delivery: median {statistics.median(floors) * 1000:.2f} ms")
    print(f"wall / (steps x floor delivery): median {ratio:.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}); target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}")
    print(f"per step: median {statistics.median(steps) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
