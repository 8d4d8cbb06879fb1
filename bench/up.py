"""Benchmark: `downgrade-lab up -- true`, the whole life of a live lab around a command that
does nothing (start the lab, print the banner, run the command, stop, sum up), in a fresh
process each time, loopback and `--isolate` (namespaces, veth, bind mounts and a second
interpreter inside), interleaved with a bare `python -c pass` as the reference.

Then Ctrl-C: from SIGINT to the lab (`up -- sleep 30`, once `sleep` runs) until it has
stopped and summed up. Target: well under `up.STOP_GRACE_S`, after which the lab would
escalate to SIGTERM (tests/test_up.py checks that it does not, by the exit status).

    .venv/bin/python bench/up.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, machine, med, spread, verdict

from downgrade_lab.frontends.up import STOP_GRACE_S
from downgrade_lab.harness.isolate import IsolationError, unshare_command


def elapsed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "NO_COLOR": "1"})
    return time.perf_counter() - started


def _child_running(pid: int, argv: list[str]) -> bool:
    """Whether a child of `pid` runs `argv` (exec'd), read from /proc."""
    wanted = [a.encode() for a in argv]
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if parent == pid and (entry / "cmdline").read_bytes().split(b"\0")[:-1] == wanted:
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def ctrl_c(up: list[str]) -> float:
    """Seconds from SIGINT to the end of `up -- sleep 30`, sent once sleep runs."""
    proc = subprocess.Popen([*up, "--", "sleep", "30"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Running "):
            break
    while not _child_running(proc.pid, ["sleep", "30"]):
        time.sleep(0.01)
    started = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    code = proc.wait()
    elapsed = time.perf_counter() - started
    if code != 128 + signal.SIGINT:
        raise SystemExit(f"up -- sleep 30 after SIGINT: exit {code}, not 130")
    return elapsed


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
    stops = [ctrl_c(up) for _ in range(max(1, args.runs // 2))]
    print(f"Ctrl-C to stopped (up -- sleep 30): {spread(stops)}  target < {STOP_GRACE_S:g} s "
          f"(STOP_GRACE_S): {verdict(max(stops) < STOP_GRACE_S)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
