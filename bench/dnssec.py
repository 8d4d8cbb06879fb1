"""Benchmark: what DNSSEC costs the lab (DESIGN §9). Prints the median time to make a lab's keys,
to sign one step's zones (`test.`, the recipient zone, an MX provider zone: build_zone plus
lab/core/dnssec.py `sign()`, every RRSIG and the NSEC chains), the same with an attack applied,
and to validate the reference sender's lookups for one delivery (MX, A, TLSA, with the DS and
DNSKEY chain) against the signed answers, in process (no sockets).

    .venv/bin/python bench/dnssec.py [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import dns.message
import dns.rdatatype
import dnslib

from downgrade_lab.core import dnssec, dnsval
from downgrade_lab.core.dnszone import answer, build_zone, wire
from downgrade_lab.core.model import Attack, DnsSpec, MessageSpec, ReceiverSpec, World

WORLD = World("example.test", DnsSpec(mx=("mx1.example.test", "mx.provider.test")), None,
              ReceiverSpec(), MessageSpec())
ADDRESSES = {h: "127.0.0.1" for h in ("mx1.example.test", "mx.provider.test",
                                      "mta-sts.example.test", "tlsrpt.example.test")}
DANE = dnssec.DaneWorld("example.test", tlsa={"mx1.example.test": [(3, 1, 1, b"\x01" * 32)],
                                              "mx.provider.test": [(2, 1, 1, b"\x02" * 32)]})


def ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    runs = parser.parse_args(argv).runs
    keys = dnssec.LabKeys()
    now = time.time()

    def sign(*attacks: Attack) -> dnssec.Zone:  # type: ignore[name-defined]
        return dnssec.sign(build_zone(WORLD, ADDRESSES), keys, DANE, attacks, now)

    zone = sign()
    anchor = dnsval.parse_anchor(keys.anchor_text())

    def validate() -> None:
        for name, rdtype in (("example.test.", "MX"), ("mx1.example.test.", "A"),
                             ("_25._tcp.mx1.example.test.", "TLSA")):
            steps = dnsval.lookup(anchor, name, dns.rdatatype.from_text(rdtype), now)
            try:
                q = next(steps)
                while True:
                    m = dns.message.make_query(q[0], dns.rdatatype.RdataType(q[1]), want_dnssec=True)
                    req = dnslib.DNSRecord.parse(m.to_wire())
                    reply = answer(zone, req)
                    q = steps.send(dns.message.from_wire(bytes(wire(req, reply, "udp")))
                                   if reply is not None else None)
            except StopIteration:
                pass

    rows = [
        ("keys for a lab (test. + 2 zones)", lambda: [dnssec.LabKeys().key(z) for z in
                                                      ("test", "example.test", "provider.test")]),
        ("unsigned zone (build_zone)", lambda: build_zone(WORLD, ADDRESSES)),
        ("signed zones per step", sign),
        ("signed zones, forge-tlsa applied", lambda: sign(Attack("forge-tlsa"))),
        ("validate MX+A+TLSA for a delivery", validate),
    ]
    print(f"DNSSEC cost, median of {runs} runs (ECDSA P-256, dnspython)")
    for label, fn in rows:
        print(f"  {label:<38} {ms(fn, runs):8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
