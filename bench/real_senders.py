"""Benchmark: the whole catalogue against real senders in the isolated namespace (issue 4).

For each sender, one `downgrade-lab run scenarios --isolate --sender NAME` per run (a fresh
process, as a user runs it): the wall time, and from the run record the median, 90th
percentile and maximum time per scenario (SKIP cells excluded: they do not start the sender).
With --runs 2 or more it also checks that every run gave the same verdicts and outcomes.
Not a test: figures go to docs/performance.md ("Real senders").

    .venv/bin/python bench/real_senders.py [--runs 2] [--sender postfix-mta-sts]...
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["postfix", "postfix-mta-sts", "postfix-mta-sts-strict", "exim", "mailauth"]


def one_run(sender: str, out: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "downgrade_lab", "run", "scenarios", "--isolate",
                           "--sender", sender, "--json", str(out)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{sender}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return wall, json.loads(out.read_text())


def cells(record: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(r["scenario"], r["verdict"], tuple(s["outcome"] for s in r["steps"]))
            for r in record["results"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--sender", action="append", dest="senders")
    args = ap.parse_args()
    print("| sender | pairs | wall time per run | per scenario: median / p90 / max | verdicts | reruns |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for sender in args.senders or DEFAULT:
            walls, durations, seen = [], [], []
            record: dict[str, Any] = {}
            for i in range(args.runs):
                wall, record = one_run(sender, Path(tmp) / f"{sender}-{i}.json")
                walls.append(wall)
                durations += [r["duration_s"] for r in record["results"] if r["verdict"] != "SKIP"]
                seen.append(cells(record))
            durations.sort()
            p90 = durations[int(0.9 * (len(durations) - 1))]
            same = "identical" if all(s == seen[0] for s in seen) else "DIFFER"
            summary = ", ".join(f"{k} {v}" for k, v in record["summary"].items() if v)
            print(f"| {sender} | {len(record['results'])} | "
                  f"{' / '.join(f'{w:.0f} s' for w in walls)} | "
                  f"{statistics.median(durations):.2f} / {p90:.2f} / {durations[-1]:.1f} s | "
                  f"{summary} | {same if args.runs > 1 else '-'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
