"""Benchmark: relay throughput of the attacker's proxy for a 20 MiB message. Target: the proxy
carries at least half of what the receiver takes directly.

The lab's receiver and proxy run in this process (as in a lab); the sender is the load
generator in its own process (bench/_load.py), and `socat` is the peer relay in its own.
Three paths, interleaved in each round, for two kinds of session:

- TLS: STARTTLS, verified; after the 220 the proxy copies opaque TLS bytes (passthrough);
- plaintext: no STARTTLS; the proxy's relay reads every line of the message, as it does
  whenever an attack leaves the mail readable.

Each stored message is checked byte for byte (SHA-256) against what was sent.

    .venv/bin/python bench/throughput.py [--runs 3] [--mib 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import sys
import time

from _common import MX, LoadClient, digest, machine, med, verdict

from downgrade_lab.harness.pki import PKI
from downgrade_lab.services.mitm import MitmProxy
from downgrade_lab.services.receiver import Receiver

TARGET_SHARE = 0.5
CONNECT_TRIES = 200  # socat's readiness: 200 x 10 ms at most


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_socat(upstream: int) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "socat", f"TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP4:127.0.0.1:{upstream}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    for _ in range(CONNECT_TRIES):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        return proc, port
    proc.kill()
    await proc.wait()
    raise SystemExit("socat did not start listening")


async def bench(runs: int, mib: int) -> int:
    size = mib * 1024 * 1024
    pki = PKI()
    receiver = Receiver(pki, [MX], {"example.test"})
    await receiver.start()
    proxy = MitmProxy({MX: receiver.addresses[MX]}, pki=pki)
    await proxy.start()
    paths = {"direct": receiver.addresses[MX][1], "proxy": proxy.ports[MX]}
    socat = None
    if shutil.which("socat"):
        socat, paths["socat"] = await start_socat(receiver.addresses[MX][1])
    client = await LoadClient.spawn()
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for i in range(runs):
            for mode in ("required", "none"):
                names = list(paths)
                names = names[i % len(names):] + names[:i % len(names)]
                for name in names:
                    job = {"port": paths[name], "ca": str(pki.ca_file), "mx": MX, "count": 1,
                           "size": size, "tls": mode, "verify": True, "timeout": 300}
                    result = await client.run(job)
                    (sent,) = result["results"]
                    stored = receiver.take_messages()
                    proxy.take_records()
                    ok = (sent["result"] == "delivered" and len(stored) == 1
                          and digest(stored[0].data) == sent["sha256"]
                          and stored[0].tls == (mode == "required"))
                    if not ok:
                        print(f"{name}/{mode}: lost or damaged: {sent['detail']}", file=sys.stderr)
                        return 1
                    rates.setdefault((mode, name), []).append(
                        sent["size"] / result["elapsed"] / 2**20)
        proxy.check()
        receiver.check()
    finally:
        await client.close()
        if socat is not None:
            socat.terminate()
            await socat.wait()
        await proxy.stop()
        await receiver.stop()
        pki.close()
    print(f"machine: {machine()}")
    print(f"{mib} MiB message, {runs} interleaved rounds, MiB/s median (min / max), share of direct:")
    ok = True
    for mode, label in (("required", "TLS (proxy in passthrough)"),
                        ("none", "plaintext (proxy reads every line)")):
        direct = med(rates[(mode, "direct")])
        print(f"  {label}:")
        for name in paths:
            values = rates[(mode, name)]
            share = med(values) / direct
            print(f"    {name:7} {med(values):6.1f} MiB/s ({min(values):.1f} / {max(values):.1f})"
                  f"  {share:5.2f}x")
        share = med(rates[(mode, "proxy")]) / direct
        ok = ok and share >= TARGET_SHARE
    print(f"proxy >= {TARGET_SHARE:g} x direct in both: {verdict(ok)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=20)
    args = ap.parse_args()
    started = time.perf_counter()
    code = asyncio.run(bench(args.runs, args.mib))
    print(f"({time.perf_counter() - started:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
