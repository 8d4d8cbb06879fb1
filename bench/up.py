"""Benchmark: `downgrade-lab up -- true`, the whole life of a live lab around a command that
does nothing (start the lab, print the banner, run the command, stop, sum up), in a fresh
process each time, loopback and `--isolate` (namespaces, veth, bind mounts and a second
interpreter inside), interleaved with a bare `python -c pass` as the reference.

    .venv/bin/python bench/up.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import ROOT, machine, med, spread

from downgrade_lab.harness.isolate import IsolationError, unshare_command


def elapsed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "NO_COLOR": "1"})
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    up = [sys.executable, "-m", "downgrade_lab", "up"]
    try:
        unshare_command()
        isolated_ok = True
    except IsolationError as exc:
        print(f"--isolate not measured: {exc}")
        isolated_ok = False
    bare, loop, iso = [], [], []
    for _ in range(args.runs):
        bare.append(elapsed([sys.executable, "-c", "pass"]))
        loop.append(elapsed([*up, "--", "true"]))
        if isolated_ok:
            iso.append(elapsed([*up, "--isolate", "--", "true"]))
    print(f"machine: {machine()}")
    print(f"bare interpreter (python -c pass): {spread(bare)}")
    print(f"up -- true (loopback): {spread(loop)}  ({med(loop) / med(bare):.1f}x bare)")
    if iso:
        print(f"up --isolate -- true: {spread(iso)}  ({med(iso) / med(loop):.2f}x loopback)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
