"""Flake check (`make flake`): the whole catalogue against the built-in senders, RUNS times in
one process (`lab.runner.run_all`), then every (scenario, sender) whose verdict changed between
runs, with the verdicts in run order and the reasons. Exit 0 when none changed, 1 otherwise.
An ERROR cell counts even when it is steady: the lab itself failed there.

    .venv/bin/python scripts/flake.py [--runs 20] [--jobs 4] [--sender NAME]... [PATH...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from pathlib import Path

from downgrade_lab.core.scenario import discover
from downgrade_lab.harness.runner import run_all
from downgrade_lab.senders.registry import builtin_senders

ROOT = Path(__file__).resolve().parent.parent


async def flake(paths: list[str], senders: list[str], runs: int, jobs: int) -> int:
    scenarios = discover(paths)
    verdicts: dict[tuple[str, str], list[str]] = defaultdict(list)
    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    outcomes: dict[tuple[str, str], list[tuple[str, ...]]] = defaultdict(list)
    for i in range(runs):
        started = time.monotonic()
        record = await run_all(scenarios, senders, jobs=jobs)
        for r in record.results:
            key = (r.scenario, r.sender)
            verdicts[key].append(r.verdict)
            reasons[key].append(r.reason)
            outcomes[key].append(tuple(s.outcome for s in r.steps))
        print(f"run {i + 1}/{runs}: {time.monotonic() - started:.1f} s {record.counts()}", flush=True)
    changed = {k: v for k, v in verdicts.items() if len(set(v)) > 1}
    errors = {k: v for k, v in verdicts.items() if "ERROR" in v and k not in changed}
    moved = {k: v for k, v in outcomes.items() if len(set(v)) > 1 and k not in changed}
    print(f"{len(verdicts)} pairs x {runs} runs: {len(changed)} changed verdicts, "
          f"{len(errors)} steady ERROR cells, {len(moved)} pairs whose step outcomes moved "
          "under a steady verdict")
    for (scenario, sender), seen in sorted(changed.items()) + sorted(errors.items()):
        print(f"  {scenario} x {sender}: {' '.join(seen)}")
        for reason in sorted(set(reasons[(scenario, sender)])):
            print(f"      {reason}")
    for (scenario, sender), seen_outcomes in sorted(moved.items()):
        print(f"  (outcomes) {scenario} x {sender}: {sorted(set(seen_outcomes))}")
    return 1 if changed or errors else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=[str(ROOT / "scenarios")])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--sender", action="append", dest="senders")
    args = ap.parse_args(argv)
    senders = args.senders or builtin_senders()
    return asyncio.run(flake(args.paths, senders, args.runs, args.jobs))


if __name__ == "__main__":
    sys.exit(main())
