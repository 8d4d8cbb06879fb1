"""Benchmark: the real-sender matrix (`make real-matrix`) with `--isolate -j N` against `-j 1`,
measured one after the other in the same call, and the two records compared cell by cell (the
verdict and every step's outcome), as `make flake` compares repeated runs. Issue 15's target:
`-j 4` <= 0.4x the wall time of `-j 1`, with identical verdicts.

By default the senders are every real sender that can run here (as `make real-matrix` picks
them). The parallel run goes first, so a machine that warms up favours `-j 1`. Needs root or
user namespaces (`--isolate`). Not a test: figures go to docs/performance.md.

    .venv/bin/python bench/real_parallel.py [--jobs 4] [--sender postfix]... [-k KEYWORD]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.4


def real_senders() -> list[str]:
    from downgrade_lab.senders.registry import all_senders

    return [n for n, i in all_senders().items() if i.needs_isolate and i.available()[0]]


def run(jobs: int, senders: list[str], keyword: str | None, out: Path) -> tuple[float, Any]:
    argv = [sys.executable, "-m", "downgrade_lab", "run", "scenarios", "--isolate", "-j",
            str(jobs), "--json", str(out)]
    for s in senders:
        argv += ["--sender", s]
    if keyword:
        argv += ["-k", keyword]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"-j {jobs}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return wall, json.loads(out.read_text())


def cells(record: Any) -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
    return {(r["scenario"], r["sender"]): (r["verdict"], tuple(s["outcome"] for s in r["steps"]))
            for r in record["results"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--sender", action="append", default=[])
    ap.add_argument("-k", dest="keyword")
    args = ap.parse_args()
    senders = args.sender or real_senders()
    if not senders:
        print("no real sender can run here (make real-setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        wide, many = run(args.jobs, senders, args.keyword, Path(tmp) / "wide.json")
        one, single = run(1, senders, args.keyword, Path(tmp) / "one.json")
    a, b = cells(single), cells(many)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    errors = sum(1 for r in many["results"] + single["results"] if r["verdict"] == "ERROR")
    print(f"senders: {', '.join(senders)}; pairs: {len(a)}")
    print(f"-j 1: {one:.1f} s   -j {args.jobs}: {wide:.1f} s   ratio {wide / one:.2f}x "
          f"(target <= {TARGET}x: {'met' if wide / one <= TARGET else 'MISSED'})")
    print(f"cells that differ: {len(differ)} of {len(a)}; ERROR cells: {errors}")
    for key in differ:
        print(f"  {key[0]} x {key[1]}: -j 1 {a.get(key)}  -j {args.jobs} {b.get(key)}")
    return 0 if not differ and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
