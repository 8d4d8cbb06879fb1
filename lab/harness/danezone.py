"""The signed zone of one step (DESIGN §9): the scenario's `[dane]` table with its certificates
looked up in the lab PKI, handed to the pure planner (lab/core/dane.py) and signer
(lab/core/dnssec.py); and the DNSSEC evidence of the step for the run record
(lab/core/daneevidence.py)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence

import dns.dnssec

from ..core.dane import forged_tlsa, published_tlsa
from ..core.daneevidence import shown_certificate, tampering, tlsa_entries
from ..core.dnssec import DaneWorld, LabKeys, SignedZones, sign
from ..core.dnszone import Zone, build_zone
from ..core.model import Attack, World
from ..core.recordparts import DaneEvidence, ShownCert, ZoneKeyTag
from .pki import PKI

OTHER_HOST = "unrelated-key.invalid"  # `cert = "other"`: a key no lab host serves


def _lookup(pki: PKI) -> Callable[[str, str], bytes]:
    def cert(host: str, which: str) -> bytes:
        if which == "ca":
            return pki.ca_der()
        if which == "other":
            return pki.leaf_der(OTHER_HOST, "self-signed")
        if which == "attacker":
            return pki.leaf_der(host, "self-signed")  # the intercept-tls default certificate
        return pki.leaf_der(host, which)
    return cert


def signed_zone(world: World, addresses: Mapping[str, str], attacks: Sequence[Attack],
                pki: PKI, keys: LabKeys, now: float | None = None) -> Zone:
    """The zone of the step, signed as the world's `[dane]` table says. Signing is most of a
    DANE step's CPU, and the pairs of a run share their keys (`PKI.dnssec_keys`), so a zone is
    signed once per keys and inputs and then served as it is: without `now`, signatures are
    made as of the keys' birth (valid from an hour before it for a week, `dnssec.LIFETIME_S`)."""
    if world.dane is None:
        return build_zone(world, addresses, attacks)
    if now is not None:
        return _sign(world, addresses, attacks, pki, keys, now)
    memo = _SIGNED.setdefault(keys, {})
    key = (world, tuple(sorted(addresses.items())), tuple(attacks))
    if key not in memo:
        memo[key] = _sign(world, addresses, attacks, pki, keys, keys.born)
    return memo[key]


# keys -> (world, addresses, attacks) -> the signed zone; gone with the keys.
_SIGNED: weakref.WeakKeyDictionary[LabKeys, dict[object, Zone]] = weakref.WeakKeyDictionary()


def _sign(world: World, addresses: Mapping[str, str], attacks: Sequence[Attack], pki: PKI,
          keys: LabKeys, now: float) -> Zone:
    zone = build_zone(world, addresses, attacks)
    assert world.dane is not None
    dane = DaneWorld(domain=world.domain, dnssec=world.dane.dnssec,
                     unsigned=world.dane.unsigned, ds=world.dane.ds,
                     tlsa=published_tlsa(world, _lookup(pki)),
                     forged=forged_tlsa(world, attacks, pki.leaf_der))
    return sign(zone, keys, dane, attacks, now)


def dane_evidence(world: World, attacks: Sequence[Attack], pki: PKI, keys: LabKeys,
                  zone: Zone) -> DaneEvidence | None:
    """What the run record shows of the step's DNSSEC (without the certificates, which only
    the handshakes tell): the honest zone's TLSA records, the forged ones, the genuine key
    of every signed zone and what the DNS attacks did. None for a world without `[dane]`."""
    if world.dane is None:
        return None
    signed = sorted(zone.signed.signed) if isinstance(zone.signed, SignedZones) else []
    memo = _EVIDENCE.setdefault(keys, {})  # like the signed zone: once per run and inputs
    key = (world, tuple(attacks), tuple(zone.origins), tuple(signed))
    if key not in memo:
        memo[key] = _evidence(world, attacks, pki, keys, zone, signed)
    return memo[key]


# keys -> (world, attacks, zones) -> the step's DNSSEC evidence; gone with the keys.
_EVIDENCE: weakref.WeakKeyDictionary[LabKeys, dict[object, DaneEvidence]] = \
    weakref.WeakKeyDictionary()


def _evidence(world: World, attacks: Sequence[Attack], pki: PKI, keys: LabKeys, zone: Zone,
              signed: list[str]) -> DaneEvidence:
    assert world.dane is not None
    forged = tlsa_entries(forged_tlsa(world, attacks, pki.leaf_der))
    return DaneEvidence(
        domain=world.domain, mx=tuple(world.dns.mx), dnssec=world.dane.dnssec,
        ds=world.dane.ds, unsigned=tuple(world.dane.unsigned),
        keys=tuple(ZoneKeyTag(z, int(dns.dnssec.key_id(keys.key(z).dnskey))) for z in signed),
        published=tlsa_entries(published_tlsa(world, _lookup(pki))), forged=forged,
        tampering=tampering(world.domain, world.dns.mx, attacks, forged, zone.origins,
                            signed))


def certificate_shown(evidence: DaneEvidence, connection: int, mx: str, presented_by: str,
                      variant: str, pki: PKI, now: float | None = None) -> ShownCert:
    """The certificate the lab presented on one connection (`presented_by` the receiver or the
    attacker, in `variant`), set against the TLSA records of `evidence`."""
    return shown_certificate(connection, mx, presented_by, variant, pki.chain_der(mx, variant),
                             evidence.published, evidence.forged, [mx, evidence.domain],
                             time.time() if now is None else now)
