"""Benchmark: one delivery step through the lab against the floor. Target: < 3x the floor.

The floor is the same TLS SMTP delivery (`deliver_via_mx`: EHLO, STARTTLS with the certificate
verified against the lab CA, EHLO, MAIL, RCPT, DATA, QUIT) straight from the client to a bare
aiosmtpd receiver on loopback, with no lab around it. Through the lab, a step is
`lab.prepare(step)`, the delivery through the attacker's proxy to the lab's receiver, and
`lab.collect()` (the evidence for the verdict). Further rows put the built-in senders in the
client's place, and the last one runs a whole pair (`run_pair`: lab start, step, stop).
Every row runs once per round, rounds interleave the rows, figures are medians.

    .venv/bin/python bench/step.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from _common import MX, bare_receiver, machine, med, message, spread, typical, verdict

from downgrade_lab.harness.lab import Lab
from downgrade_lab.harness.pki import PKI
from downgrade_lab.harness.runner import run_pair
from downgrade_lab.senders.base import Sender, SendReport
from downgrade_lab.senders.builtin.smtpclient import deliver_via_mx
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.senders.registry import make_sender

TARGET_RATIO = 3.0
Row = Callable[[], Awaitable[None]]


async def bench(runs: int) -> int:
    scenario = typical()
    step = scenario.steps[0]
    pki = PKI()
    server, port, floor_count = await bare_receiver(pki)
    floor_env = LabEnv(domain="example.test", dns_host="127.0.0.1", dns_port=53,
                       ca_file=pki.ca_file, ports={MX: port})
    lab = Lab(scenario, pki=pki)
    await lab.start()
    opportunistic = make_sender("opportunistic")
    await opportunistic.start(lab.env)

    async def floor() -> None:
        attempt = await deliver_via_mx(floor_env, MX, message(), tls="required", verify=True)
        assert attempt.delivered and attempt.tls, attempt.detail

    async def through_lab() -> None:
        await lab.prepare(step)
        m = message()
        attempt = await deliver_via_mx(lab.env, MX, m, tls="required", verify=True)
        evidence = lab.collect(step, m, SendReport("delivered")).evidence
        assert attempt.delivered and evidence.stored and evidence.stored[0].tls, attempt.detail

    async def with_sender(sender: Sender) -> None:
        await lab.prepare(step)
        m = message()
        report = await sender.send(m, time.monotonic() + step.deadline_s)
        evidence = lab.collect(step, m, report).evidence
        assert report.state == "delivered" and evidence.stored, report.detail

    async def reference_cold() -> None:
        sender = make_sender("reference")  # an empty policy cache: discovery and fetch
        await sender.start(lab.env)
        try:
            await with_sender(sender)
        finally:
            await sender.stop()

    async def pair() -> None:
        result = await run_pair(scenario, "reference", pki)
        assert result.verdict == "PASS", result.reason

    rows: dict[str, Row] = {
        "floor: client -> bare aiosmtpd": floor,
        "lab step, same delivery via proxy": through_lab,
        "lab step, opportunistic sender (+ MX lookup)": lambda: with_sender(opportunistic),
        "lab step, reference sender, cold cache (+ TXT, HTTPS fetch)": reference_cold,
        "whole pair: run_pair(reference), lab start to stop": pair,
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    try:
        for row in rows.values():  # one warm-up each
            await row()
        for i in range(runs):
            names = list(rows)
            names = names[i % len(names):] + names[:i % len(names)]  # rotate the order
            for name in names:
                started = time.perf_counter()
                await rows[name]()
                times[name].append(time.perf_counter() - started)
    finally:
        await opportunistic.stop()
        await lab.stop()
        server.close()
        await server.wait_closed()
        pki.close()
    base = med(times["floor: client -> bare aiosmtpd"])
    print(f"machine: {machine()}")
    print(f"{runs} interleaved rounds, median (min / max), ratio to the floor:")
    for name, values in times.items():
        print(f"  {name:62} {spread(values):>28}  {med(values) / base:5.2f}x")
    ratio = med(times["lab step, same delivery via proxy"]) / base
    print(f"lab step / floor = {ratio:.2f}x  [target < {TARGET_RATIO:g}x: {verdict(ratio < TARGET_RATIO)}]")
    print(f"floor receiver stored {floor_count.stored} messages")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    return asyncio.run(bench(args.runs))


if __name__ == "__main__":
    sys.exit(main())
