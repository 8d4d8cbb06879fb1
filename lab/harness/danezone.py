"""The signed zone of one step (DESIGN §9): the scenario's `[dane]` table with its certificates
resolved from the lab PKI, handed to the pure signer (lab/core/dnssec.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ..core.dane import record_for
from ..core.dnssec import DaneWorld, LabKeys, Tlsa, sign
from ..core.dnszone import Zone, build_zone
from ..core.model import Attack, TlsaSpec, World
from ..core.scenario import EVERY_MX
from .pki import PKI

OTHER_HOST = "unrelated-key.invalid"  # `cert = "other"`: a key no lab host serves


def _cert(pki: PKI, world: World, host: str, which: str) -> bytes:
    if which == "ca":
        return pki.ca_der()
    if which == "other":
        return pki.leaf_der(OTHER_HOST, "self-signed")
    if which == "attacker":
        return pki.leaf_der(host, "self-signed")  # the intercept-tls default certificate
    return pki.leaf_der(host, world.receiver.cert)


def _record(pki: PKI, world: World, host: str, spec: TlsaSpec) -> Tlsa:
    if spec.data is not None:
        return (spec.usage, spec.selector, spec.mtype, bytes.fromhex(spec.data))
    r = record_for(_cert(pki, world, host, spec.cert), spec.usage, spec.selector, spec.mtype)
    return (r.usage, r.selector, r.mtype, r.data)


def tlsa_records(pki: PKI, world: World) -> dict[str, list[Tlsa]]:
    """MX host -> the TLSA records the domain publishes for it."""
    if world.dane is None:
        return {}
    table = dict(world.dane.tlsa)
    out: dict[str, list[Tlsa]] = {}
    for host in world.dns.mx:
        specs = table.get(host, table.get(EVERY_MX))
        if specs:
            out[host] = [_record(pki, world, host, s) for s in specs]
    return out


def signed_zone(world: World, addresses: Mapping[str, str], attacks: Sequence[Attack],
                pki: PKI, keys: LabKeys, now: float | None = None) -> Zone:
    """The zone of the step, signed as the world's `[dane]` table says."""
    zone = build_zone(world, addresses, attacks)
    if world.dane is None:
        return zone
    forged = {h: [(3, 1, 1, record_for(pki.leaf_der(h, a.cert or "self-signed"), 3, 1, 1).data)]
              for a in attacks if a.kind == "forge-tlsa" for h in world.dns.mx
              if a.applies_to(h)}
    dane = DaneWorld(domain=world.domain, dnssec=world.dane.dnssec,
                     unsigned=world.dane.unsigned, ds=world.dane.ds,
                     tlsa=tlsa_records(pki, world), forged=forged)
    return sign(zone, keys, dane, attacks, time.time() if now is None else now)
