"""Benchmark: lab cold start for a typical scenario (baseline/enforce-healthy). Target: < 300 ms.

"Ready" means: the CA and every certificate made, the four services (DNS, policy host,
receiver, proxy) and the TLS-RPT collector listening, the first step prepared, and a TCP
connection through the proxy greeted by the genuine receiver (whose TLS context is built then).
Measured side by side, interleaved, in one process:

- cold: a fresh PKI (new CA) each time, as `Lab(scenario)` alone does;
- shared PKI: the CA made once, as `run_all` shares it between pairs;
- in a fresh process: `python bench/coldstart.py --once` (interpreter, imports, one cold
  start) against a bare `python -c pass`.

    .venv/bin/python bench/coldstart.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, med, spread, typical, verdict

from downgrade_lab.harness.lab import Lab
from downgrade_lab.harness.pki import PKI

TARGET_S = 0.300
SELF = Path(__file__).resolve()


async def ready(pki: PKI | None) -> tuple[float, float]:
    """(seconds until ready, of which making the PKI) for one lab, then stop it."""
    scenario = typical()
    started = time.perf_counter()
    own = pki or PKI()
    made = time.perf_counter() - started
    lab = Lab(scenario, pki=own)
    try:
        await lab.start()
        await lab.prepare(scenario.steps[0])
        host = scenario.mx_hosts()[0]
        reader, writer = await asyncio.open_connection(*lab.env.address(host, 25))
        greeting = await reader.readline()
        elapsed = time.perf_counter() - started
        writer.close()
        await writer.wait_closed()
        if not greeting.startswith(b"220"):
            raise SystemExit(f"no greeting through the proxy: {greeting!r}")
    finally:
        await lab.stop()
        if pki is None:
            own.close()
    return elapsed, made


def process_time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def bench(runs: int) -> int:
    await ready(None)  # warm the imports and the allocator, as any second lab in a run finds them
    cold: list[float] = []
    pki_made: list[float] = []
    shared: list[float] = []
    with PKI() as pki:
        for _ in range(runs):
            elapsed, made = await ready(None)
            cold.append(elapsed)
            pki_made.append(made)
            shared.append((await ready(pki))[0])
    once = [sys.executable, str(SELF), "--once"]
    bare = [sys.executable, "-c", "pass"]
    fresh: list[float] = []
    interp: list[float] = []
    for _ in range(max(3, runs // 4)):
        fresh.append(process_time(once))
        interp.append(process_time(bare))
    print(f"machine: {machine()}")
    print(f"cold start, fresh PKI (median, min / max of {runs}): {spread(cold)}"
          f"  [target < {TARGET_S * 1000:.0f} ms: {verdict(med(cold) < TARGET_S)}]")
    print(f"  of which making the CA: {spread(pki_made)}")
    print(f"start with a shared PKI: {spread(shared)}  (cold / shared = {med(cold) / med(shared):.2f}x)")
    print(f"fresh process, imports + one cold start: {spread(fresh)}")
    extra = (med(fresh) - med(interp)) * 1000
    print(f"  bare interpreter (python -c pass): {spread(interp)}"
          f"  (ratio {med(fresh) / med(interp):.1f}x; imports + lab: {extra:.0f} ms)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--once", action="store_true", help="one cold start (the fresh-process run)")
    args = ap.parse_args()
    if args.once:
        asyncio.run(ready(None))
        return 0
    return asyncio.run(bench(args.runs))


if __name__ == "__main__":
    sys.exit(main())
