"""Benchmark: N deliveries at once through the lab's proxy and receiver, N = 50, 200, 500, then
10,000 messages (500 at a time). Target: nothing lost.

A lab for a typical scenario (baseline/enforce-healthy) runs in this process; the senders are
the load generator in its own process (bench/_load.py): one SMTP session per message,
STARTTLS required and verified. After each batch every message the client sent must be
stored exactly once, byte for byte (SHA-256), with its TLS facts (version, cipher, SNI = the MX
name), and the proxy must hold one clean record per connection. Each batch also runs straight
to the receiver, side by side, for the ratio.

    .venv/bin/python bench/concurrency.py [--runs 3] [--total 10000] [--sizes 50,200,500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from _common import MX, LoadClient, digest, machine, med, typical, verdict

from downgrade_lab.harness.lab import Lab

TOTAL_AT_ONCE = 500


async def audit(lab: Lab, sent: list[dict[str, Any]], through_proxy: bool) -> list[str]:
    """Problems with one batch: failed sends, lost, duplicated or damaged messages, missing
    TLS facts, proxy records that are missing or carry an error."""
    assert lab.proxy is not None
    # The client has its 221 before the proxy sees the close: let every connection end, so
    # each leaves exactly one record.
    await asyncio.wait_for(lab.proxy.wait_idle(), 30)
    problems = [f"send failed: {s['result']}: {s['detail']}" for s in sent
                if s["result"] != "delivered"]
    stored: dict[str, list[Any]] = {}
    for m in lab.receiver.take_messages():
        token = m.data.split(b"DGLTOKEN", 1)[1][:32].decode() if b"DGLTOKEN" in m.data else ""
        stored.setdefault("DGLTOKEN" + token, []).append(m)
    for s in sent:
        got = stored.pop(s["token"], [])
        if len(got) != 1:
            problems.append(f"{s['token']}: stored {len(got)} times")
            continue
        m = got[0]
        if digest(m.data) != s["sha256"]:
            problems.append(f"{s['token']}: stored {len(m.data)} bytes, sent {s['size']}, not equal")
        if not (m.tls and m.tls_version and m.cipher and m.sni == MX):
            problems.append(f"{s['token']}: TLS facts missing: {m.tls_version} {m.cipher} {m.sni}")
    problems += [f"{token}: stored but never sent" for token in stored]
    records = lab.proxy.take_records()
    if through_proxy:
        if len(records) != len(sent):
            problems.append(f"proxy: {len(records)} connection records for {len(sent)} sessions")
        problems += [f"proxy: {r.error}" for r in records if r.error]
        problems += ["proxy: a record of a live connection" for r in records if r.live]
        problems += [f"proxy: no passthrough on {r.mx}" for r in records
                     if not any(e.said == "tls-passthrough" for e in r.transcript)]
    for service in (lab.receiver, lab.proxy):
        try:
            service.check()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(str(exc))
    return problems


async def batch(lab: Lab, client: LoadClient, port: int, count: int, at_once: int,
                through_proxy: bool) -> tuple[float, list[str]]:
    result = await client.run({"port": port, "ca": str(lab.env.ca_file), "mx": MX,
                               "count": count, "concurrency": at_once, "tls": "required",
                               "verify": True, "timeout": 120}, limit_s=1800)
    return result["elapsed"], await audit(lab, result["results"], through_proxy)


async def bench(runs: int, sizes: list[int], total: int) -> int:
    scenario = typical()
    client = await LoadClient.spawn()
    failed = False
    try:
        async with Lab(scenario) as lab:
            await lab.prepare(scenario.steps[0])
            paths = {"proxy": lab.env.ports[MX], "direct": lab.receiver.addresses[MX][1]}
            print(f"machine: {machine()}")
            print(f"N at once, {runs} interleaved rounds, seconds median (min / max), msgs/s:")
            for n in sizes:
                times: dict[str, list[float]] = {"proxy": [], "direct": []}
                lost = 0
                for i in range(runs):
                    for name in (list(paths) if i % 2 == 0 else list(paths)[::-1]):
                        elapsed, problems = await batch(lab, client, paths[name], n, n,
                                                        name == "proxy")
                        times[name].append(elapsed)
                        lost += len(problems)
                        for p in problems[:5]:
                            print(f"    {name} N={n}: {p}")
                for name, values in times.items():
                    print(f"  N={n:4} {name:6} {med(values):6.2f} s ({min(values):.2f} / {max(values):.2f})"
                          f"  {n / med(values):6.0f} msgs/s")
                ratio = med(times["proxy"]) / med(times["direct"])
                print(f"  N={n:4} proxy / direct = {ratio:.2f}x; problems: {lost}"
                      f"  [nothing lost: {verdict(lost == 0)}]")
                failed = failed or lost > 0
            if total:
                started = time.perf_counter()
                elapsed, problems = await batch(lab, client, paths["proxy"], total,
                                                TOTAL_AT_ONCE, True)
                for p in problems[:10]:
                    print(f"    total: {p}")
                print(f"{total} messages through the proxy, {TOTAL_AT_ONCE} at a time: "
                      f"{elapsed:.1f} s ({total / elapsed:.0f} msgs/s), audit "
                      f"{time.perf_counter() - started - elapsed:.1f} s; problems: {len(problems)}"
                      f"  [nothing lost: {verdict(not problems)}]")
                failed = failed or bool(problems)
    finally:
        await client.close()
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="50,200,500")
    ap.add_argument("--total", type=int, default=10_000)
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    return asyncio.run(bench(args.runs, sizes, args.total))


if __name__ == "__main__":
    sys.exit(main())
