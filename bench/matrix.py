"""Benchmark: the whole catalogue x the built-in senders, as `make matrix` runs it.

Prints the wall time of each run (a fresh process each time, as a user sees it), the median,
and the per-step median from the run records. Not a test: figures go to docs/performance.md.

    .venv/bin/python bench/matrix.py [--runs 5] [--jobs 4]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    walls: list[float] = []
    steps: list[float] = []
    pairs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "downgrade_lab", "run", "scenarios", "-j", str(args.jobs),
                 "--json", str(out)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wall = time.perf_counter() - started
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
                return 2
            record = json.loads(out.read_text())
            pairs = len(record["results"])
            for r in record["results"]:
                if r["verdict"] == "ERROR":  # the lab failed, not the sender: say where and why
                    print(f"  ERROR {r['scenario']} x {r['sender']}: {r['reason']}")
            for r in record["results"]:
                n = max(1, len(r["steps"]))
                steps += [r["duration_s"] / n] * n
            walls.append(wall)
            print(f"run {i + 1}: {wall:.2f} s wall ({record['summary']})")
    print(f"pairs (scenario x sender): {pairs}")
    print(f"wall time: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s, "
          f"max {max(walls):.2f} s over {args.runs} runs (-j {args.jobs})")
    print(f"per step: median {statistics.median(steps) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
