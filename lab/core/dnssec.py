"""DNSSEC for the lab DNS (DESIGN §9, RFC 4033-4035), pure: keys, signing, signed answers.

`LabKeys` makes one ECDSA P-256 key (algorithm 13, a combined signing key with flags 257) per
zone the first time it is asked, so every lab has fresh keys. `sign()` turns the unsigned `Zone`
of a step (lab/core/dnszone.py) plus the TLSA records of the scenario into `SignedZones`:

- the lab root is `test.` (the trust anchor, `LabKeys.anchor_ds()`); every lab zone below it
  (`example.test`, `other.test`, ...) is a child, delegated with NS and, when signed, a DS;
- every RRset of a signed zone carries an RRSIG and the zone an NSEC chain (dnspython's
  `dns.dnssec.sign_zone`), so "no TLSA here" is provable (RFC 4035 §3.1.3);
- a zone listed as unsigned (or every child with `dnssec = false`) gets no keys, and its parent
  proves with a signed NSEC that the delegation has no DS: an *insecure* delegation.

The DNS-layer DANE attacks of the registry (lab/core/model.py) are applied to the signed data:
the attacker cannot sign, so everything it changes is unsigned, signed with its own key, or a
genuine signature replayed past its expiry. `SignedZones.answer()` serves a query from it,
with the RRSIGs and NSEC proofs only when the query set DO (RFC 3225, RFC 4035 §3.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dns.dnssec
import dns.dnssectypes
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.zone
import dnslib
from cryptography.hazmat.primitives.asymmetric import ec
from msgspec import Struct, field

from ..errors import LabError
from .dnszone import EDNS_LIMIT, MAX_CHAIN, Zone
from .model import DANE_DNS_ATTACKS, Attack, Tlsa
from .names import name_key

ANCHOR = "test"  # the lab root: senders trust its key and nothing else
ALGORITHM = dns.dnssectypes.Algorithm.ECDSAP256SHA256  # 13
FLAGS = 257  # ZONE | SEP: one key signs the zone and is the one the DS points at
LIFETIME_S = 7 * 86400
SKEW_S = 3600  # signatures start an hour ago: senders' clocks may run behind
EXPIRED_AGO_S = 86400  # expire-rrsig replays a signature that ran out a day ago
TLSA_PORT_PREFIX = "_25._tcp."  # RFC 7672 §2.2.3: TLSA records of an MX host live here
IN = dns.rdataclass.IN
T = dns.rdatatype.RdataType
EDNS_DO = 1 << 15  # the DO bit in the OPT record's TTL field (RFC 3225)

# The DNS-layer DANE attacks (names in lab/core/model.py ATTACKS). Invariant: each acts only on
# signed data, so a lab without DNSSEC ignores them as it must (no TLSA to forge there).


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(name_key(text) + ".")


def tlsa_owner(host: str) -> str:
    return TLSA_PORT_PREFIX + name_key(host)


class ZoneKey(Struct):
    private: ec.EllipticCurvePrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY


class LabKeys:
    """The keys of one lab, made on first use: one per zone, and the attacker's own."""

    def __init__(self, born: float = 0.0) -> None:
        self._keys: dict[str, ZoneKey] = {}
        self.born = born  # the time the keys' owner signs "now" as (harness: when made)

    def key(self, zone: str) -> ZoneKey:
        """The key of `zone` (the attacker's: `key("attacker:" + zone)`)."""
        if zone not in self._keys:
            private = ec.generate_private_key(ec.SECP256R1())
            dnskey = dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, flags=FLAGS)
            self._keys[zone] = ZoneKey(private, dnskey)
        return self._keys[zone]

    def ds(self, zone: str, key_of: str | None = None) -> dns.rdtypes.ANY.DS.DS:
        """The DS (SHA-256) for `zone`'s key (or for the key named `key_of`)."""
        return dns.dnssec.make_ds(_name(zone), self.key(key_of or zone).dnskey, "SHA256")

    def anchor_ds(self) -> dns.rdtypes.ANY.DS.DS:
        return self.ds(ANCHOR)

    def anchor_text(self) -> str:
        """The trust anchor as zone-file lines (the DS and the DNSKEY of `test.`), the format
        unbound's `trust-anchor-file` and dnspython both read."""
        return (f"{ANCHOR}. IN DS {self.anchor_ds().to_text()}\n"
                f"{ANCHOR}. IN DNSKEY {self.key(ANCHOR).dnskey.to_text()}\n")


class DaneWorld(Struct, frozen=True):
    """What `sign()` needs of the scenario's `[dane]` table, with certificates resolved."""

    domain: str  # the recipient domain; `ds` and the DS attacks act on its zone
    dnssec: bool = True  # sign the child zones (False: every child is insecure)
    unsigned: tuple[str, ...] = ()  # child zones left unsigned all the same
    ds: str = "valid"  # valid | missing | wrong: the DS of the recipient's zone at its parent
    tlsa: Mapping[str, Sequence[Tlsa]] = field(default_factory=dict)  # MX host -> records
    forged: Mapping[str, Sequence[Tlsa]] = field(default_factory=dict)  # forge-tlsa's records


def _rdata(rtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(IN, rtype, text)


def _record_rdata(r: Any) -> dns.rdata.Rdata:
    if r.rtype == "A":
        return _rdata("A", r.address)
    if r.rtype == "MX":
        return _rdata("MX", f"{r.preference} {r.target + '.' if r.target else '.'}")
    if r.rtype == "CNAME":
        return _rdata("CNAME", f"{r.target}.")
    if r.rtype == "TXT":
        return dns.rdtypes.ANY.TXT.TXT(IN, T.TXT, list(r.strings))
    # SOA minimum 0, as dnszone's: negative answers are not cached either (RFC 2308 §5)
    return _rdata("SOA", f"ns.{r.name}. hostmaster.{r.name}. 1 0 0 0 0")


def _tlsa_rdata(t: Tlsa) -> dns.rdata.Rdata:
    usage, selector, mtype, data = t
    return _rdata("TLSA", f"{usage} {selector} {mtype} {data.hex() or '00'}")


def _parent(zone: str, zones: Iterable[str]) -> str:
    above = [z for z in zones if z != zone and zone.endswith("." + z)]
    return max(above, key=len)


def _origin(z: dns.zone.Zone) -> dns.name.Name:
    assert z.origin is not None  # every lab zone is made with its origin
    return z.origin


def _zname(z: dns.zone.Zone) -> str:
    return str(_origin(z).to_text()).rstrip(".")


def _add(z: dns.zone.Zone, owner: str, *rdatas: dns.rdata.Rdata) -> None:
    for rd in rdatas:
        z.find_rdataset(_name(owner), rd.rdtype, create=True).add(rd, 0)


def _sign_rrset(z: dns.zone.Zone, owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, key: ZoneKey,
                now: float, *, expired: bool = False) -> None:
    """(Re-)sign one RRset in place, replacing its RRSIG."""
    rds = z.get_rdataset(owner, rdtype)
    if rds is None:
        return
    if expired:
        inception, expiration = now - 30 * 86400, now - EXPIRED_AGO_S
    else:
        inception, expiration = now - SKEW_S, now + LIFETIME_S
    sig = dns.dnssec.sign((owner, rds), key.private, _origin(z), key.dnskey,
                          inception=inception, expiration=expiration)
    sigs = dns.rdataset.from_rdata(0, sig)
    z.replace_rdataset(owner, sigs)  # replace_rdataset keys by (type, covers)


class _Built(Struct):
    zones: dict[str, dns.zone.Zone]
    signed: set[str]
    dropped: set[dns.name.Name] = field(default_factory=set)


def _build(zone: Zone, keys: LabKeys, dane: DaneWorld, attacks: Sequence[Attack],
           now: float) -> _Built:
    names = [ANCHOR] + [o for o in zone.origins if o.endswith("." + ANCHOR)]
    outside = [o for o in zone.origins if o != ANCHOR and not o.endswith("." + ANCHOR)]
    if outside:
        raise LabError(f"DNSSEC: every lab zone must lie below {ANCHOR}. "
                       f"(the trust anchor); {', '.join(outside)} does not")
    kinds = {a.kind for a in attacks}
    home = zone.origin_of(dane.domain) or dane.domain
    signed = {ANCHOR} | {n for n in names[1:] if dane.dnssec and n not in dane.unsigned}
    zones = {n: dns.zone.Zone(_name(n), relativize=False) for n in names}

    def zone_of(owner: str) -> str:
        return max((n for n in names if owner == n or owner.endswith("." + n)), key=len)

    for r in zone.records:
        _add(zones[zone_of(r.name)], r.name, _record_rdata(r))
    _add(zones[ANCHOR], ANCHOR, _rdata("SOA", f"ns.{ANCHOR}. hostmaster.{ANCHOR}. 1 0 0 0 0"))
    for host, records in dane.tlsa.items():
        host = name_key(host)
        owner = tlsa_owner(host)
        _add(zones[zone_of(host)], owner, *(_tlsa_rdata(t) for t in records))
    for child in names[1:]:
        parent = _parent(child, names)
        _add(zones[parent], child, _rdata("NS", f"ns.{child}."))
        if child not in signed:
            continue
        if child == home and dane.ds == "missing":
            continue  # signed, but the parent does not know: an island, hence insecure
        key_of = "wrong:" + child if child == home and dane.ds == "wrong" else None
        _add(zones[parent], child, keys.ds(child, key_of))
    for n in signed:
        # wrong-ds: the attacker re-signs the whole recipient zone with its own key
        key = keys.key("attacker:" + n if n == home and "wrong-ds" in kinds else n)
        dns.dnssec.sign_zone(zones[n], keys=[(key.private, key.dnskey)], add_dnskey=True,
                             inception=now - SKEW_S, expiration=now + LIFETIME_S)
    return _Built(zones, signed)


def _strip_sigs(z: dns.zone.Zone, owner: dns.name.Name) -> None:
    node = z.get_node(owner)
    if node is None:
        return
    for rds in list(node.rdatasets):
        if rds.rdtype == T.RRSIG:
            node.delete_rdataset(IN, T.RRSIG, rds.covers)


def _attack(built: _Built, zone: Zone, keys: LabKeys, dane: DaneWorld,
            attacks: Sequence[Attack], now: float) -> None:
    zones, names = built.zones, list(built.zones)
    home = zone.origin_of(dane.domain) or dane.domain
    mx_hosts = [name_key(h) for h in dane.tlsa] + [
        r.target for r in zone.records if r.rtype == "MX" and r.target]

    def zone_of(owner: str) -> dns.zone.Zone:
        return zones[max((n for n in names if owner == n or owner.endswith("." + n)), key=len)]

    def hosts(a: Attack) -> list[str]:
        return sorted({h for h in mx_hosts if a.applies_to(h)})

    for a in attacks:
        if a.kind == "strip-rrsig":
            if a.hosts is None:  # every signature of every child zone
                for n, z in zones.items():
                    if n != ANCHOR:
                        for owner in list(z.nodes):
                            _strip_sigs(z, owner)
            for h in hosts(a) if a.hosts is not None else []:
                for text in (h, tlsa_owner(h)):
                    _strip_sigs(zone_of(text), _name(text))
        elif a.kind == "drop-tlsa":
            for h in hosts(a):
                # The answer loses its TLSA and the attacker cannot sign the NSEC that would
                # prove the absence: the owner answers NODATA with no proof at all.
                built.dropped.add(_name(tlsa_owner(h)))
        elif a.kind == "expire-rrsig":
            for h in hosts(a):
                z = zone_of(tlsa_owner(h))
                n = _zname(z)
                if n in built.signed:
                    _sign_rrset(z, _name(tlsa_owner(h)), T.TLSA, keys.key(n), now, expired=True)
        elif a.kind == "forge-tlsa":
            for h in hosts(a):
                z = zone_of(tlsa_owner(h))
                owner = _name(tlsa_owner(h))
                z.delete_rdataset(owner, T.TLSA)
                forged = dane.forged.get(h, ())
                _add(z, tlsa_owner(h), *(_tlsa_rdata(t) for t in forged))
                n = _zname(z)
                z.delete_rdataset(owner, T.RRSIG, T.TLSA)
                if n in built.signed:  # signed, but with the attacker's key: bogus
                    _sign_rrset(z, owner, T.TLSA, keys.key("attacker:" + n), now)
        elif a.kind in ("remove-ds", "wrong-ds") and home in built.signed - {ANCHOR}:
            parent = zones[_parent(home, names)]
            owner = _name(home)
            if a.kind == "remove-ds":
                # DS, its signature and the NSEC that would say so: gone; and the child made to
                # look unsigned, the downgrade this attack is for.
                parent.delete_rdataset(owner, T.DS)
                parent.delete_rdataset(owner, T.NSEC)
                _strip_sigs(parent, owner)
                child = zones[home]
                for name in list(child.nodes):
                    _strip_sigs(child, name)
                child.delete_rdataset(owner, T.DNSKEY)
            else:
                parent.replace_rdataset(owner, dns.rdataset.from_rdata(
                    0, keys.ds(home, "attacker:" + home)))
                _sign_rrset(parent, owner, T.DS, keys.key("attacker:" + _parent(home, names)), now)


def sign(zone: Zone, keys: LabKeys, dane: DaneWorld, attacks: Sequence[Attack] = (),
         now: float = 0.0) -> Zone:
    """`zone` with its signed form attached (`Zone.signed`), the DANE attacks applied."""
    attacks = [a for a in attacks if a.kind in DANE_DNS_ATTACKS]
    built = _build(zone, keys, dane, attacks, now)
    _attack(built, zone, keys, dane, attacks, now)
    return Zone(origins=zone.origins, records=zone.records, faults=zone.faults,
                signed=SignedZones(built.zones, frozenset(built.signed),
                                       frozenset(built.dropped)))


def _do(request: dnslib.DNSRecord) -> tuple[bool, bool]:
    """(has EDNS, DO set)."""
    opt = next((r for r in request.ar if r.rtype == dnslib.QTYPE.OPT), None)
    return opt is not None, opt is not None and bool(opt.ttl & EDNS_DO)


class _Raw(dnslib.RD):  # type: ignore[misc]
    """RDATA exactly as dnspython wrote it (names uncompressed, so signatures stay valid)."""

    def __init__(self, data: bytes, text: str) -> None:
        super().__init__(data)
        self._text = text

    def toZone(self) -> str:  # noqa: N802 - dnslib's name
        return self._text


class SignedZones:
    """The lab's zones as dnspython zones, signed (or not), ready to answer from."""

    def __init__(self, zones: Mapping[str, dns.zone.Zone], signed: frozenset[str],
                 dropped: frozenset[dns.name.Name] = frozenset()) -> None:
        self.zones = dict(zones)
        self.signed = signed
        self.dropped = dropped  # owners whose every answer the attacker empties (drop-tlsa)
        self._names: dict[str, frozenset[dns.name.Name]] = {}
        self._nsecs: dict[str, list[tuple[dns.name.Name, dns.rdtypes.ANY.NSEC.NSEC]]] = {}
        # (qname as asked, qtype, EDNS, DO) -> what `answer` puts in a reply, or None (no
        # answer): the zones do not change once built, and a run serves one signed zone to
        # every pair that asks for it, so each answer is worked out once.
        self._answers: dict[tuple[str, int, bool, bool], _Answer | None] = {}
        for n, z in self.zones.items():
            existing: set[dns.name.Name] = set()
            for owner in z.nodes:
                name = owner
                while name != _origin(z) and len(name) > len(_origin(z)):
                    existing.add(name)
                    name = name.parent()
                existing.add(_origin(z))
            self._names[n] = frozenset(existing)
            nsecs = []
            for owner, node in z.nodes.items():
                rds = node.get_rdataset(IN, T.NSEC)
                if rds is not None:
                    nsecs.append((owner, rds[0]))
            self._nsecs[n] = sorted(nsecs, key=lambda p: p[0])

    def covers(self, qname: str) -> bool:
        name = name_key(qname)
        return name == ANCHOR or name.endswith("." + ANCHOR)

    def zone_for(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> str | None:
        text = name_key(name.to_text())
        hits = [n for n in self.zones if text == n or text.endswith("." + n)]
        if not hits:
            return None
        best = max(hits, key=len)
        if rdtype == T.DS and text == best and best != ANCHOR:
            # RFC 4035 §3.1.4.1: the DS lives on the parent side of the cut
            best = _parent(best, self.zones)
        return best

    def _covering(self, zname: str, name: dns.name.Name
                  ) -> tuple[dns.name.Name, dns.rdtypes.ANY.NSEC.NSEC] | None:
        for owner, nsec in reversed(self._nsecs[zname]):
            if owner < name:
                return owner, nsec
        return None

    def answer(self, zone: Zone, request: dnslib.DNSRecord) -> dnslib.DNSRecord | None:
        edns, do = _do(request)
        key = (str(request.q.qname), int(request.q.qtype), edns, do)
        if key not in self._answers:
            self._answers[key] = self._work_out(zone, request, edns, do)
        worked = self._answers[key]
        if worked is None:
            return None
        reply = request.reply()
        reply.header.rcode = worked.rcode
        for rr in worked.answer:
            reply.add_answer(rr)
        for rr in worked.auth:
            reply.add_auth(rr)
        reply.header.aa = 1
        if edns:
            reply.add_ar(dnslib.EDNS0(udp_len=EDNS_LIMIT, flags="do" if do else ""))
        return reply

    def _work_out(self, zone: Zone, request: dnslib.DNSRecord, edns: bool, do: bool
                  ) -> _Answer | None:
        reply = request.reply()
        q = request.q
        name = _name(str(q.qname))
        qtype = dns.rdatatype.RdataType.make(int(q.qtype))
        answer: list[dns.rrset.RRset] = []
        auth: list[dns.rrset.RRset] = []
        seen: set[dns.name.Name] = set()
        while True:
            fault = zone.fault(name.to_text())
            if fault == "timeout":
                return None
            if fault == "servfail":
                reply.header.rcode = dnslib.RCODE.SERVFAIL
                break
            zname = self.zone_for(name, qtype)
            if zname is None:  # a CNAME leading out of the lab: what we know
                break
            z = self.zones[zname]
            node = z.get_node(name) if fault is None else None
            if name in self.dropped:
                auth += self._with_sig(z, _origin(z), T.SOA, do)
                break
            if node is not None:
                cname = node.get_rdataset(IN, T.CNAME)
                if cname is not None and qtype not in (T.CNAME, T.ANY):
                    if name in seen or len(seen) >= MAX_CHAIN:
                        reply.header.rcode = dnslib.RCODE.SERVFAIL
                        break
                    seen.add(name)
                    answer += self._with_sig(z, name, T.CNAME, do)
                    name = cname[0].target
                    continue
                types = ([r.rdtype for r in node.rdatasets if r.rdtype != T.RRSIG]
                         if qtype == T.ANY else [qtype])
                found = [t for t in types if node.get_rdataset(IN, t) is not None]
                for t in found:
                    answer += self._with_sig(z, name, t, do)
                if not found:  # NODATA: the SOA, and the NSEC at the name (RFC 4035 §3.1.3.1)
                    auth += self._with_sig(z, _origin(z), T.SOA, do)
                    if do:
                        auth += self._with_sig(z, name, T.NSEC, do)
                break
            auth += self._with_sig(z, _origin(z), T.SOA, do)
            nxdomain = fault == "nxdomain" or name not in self._names[zname]
            if nxdomain:
                reply.header.rcode = dnslib.RCODE.NXDOMAIN
            if do:
                proof = [name]
                if nxdomain:  # RFC 4035 §3.1.3.2: the name and the wildcard are both denied
                    encloser = name.parent()
                    while encloser not in self._names[zname] and len(encloser) > len(_origin(z)):
                        encloser = encloser.parent()
                    proof.append(dns.name.Name(("*",) + encloser.labels))
                owners: list[dns.name.Name] = []
                for p in proof:
                    hit = self._covering(zname, p)
                    if hit is not None and hit[0] not in owners:
                        owners.append(hit[0])
                for owner in owners:
                    auth += self._with_sig(z, owner, T.NSEC, do)
            break
        return _Answer(int(reply.header.rcode),
                       tuple(_rr(r.name, r.rdtype, rd) for r in answer for rd in r),
                       tuple(_rr(r.name, r.rdtype, rd) for r in auth for rd in r))

    @staticmethod
    def _with_sig(z: dns.zone.Zone, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, do: bool
                  ) -> list[dns.rrset.RRset]:
        node = z.get_node(name)
        if node is None:
            return []
        out = []
        rds = node.get_rdataset(IN, rdtype)
        if rds is not None:
            out.append(dns.rrset.from_rdata_list(name, 0, list(rds)))
        sigs = node.get_rdataset(IN, T.RRSIG, rdtype)
        if do and rds is not None and sigs is not None:
            out.append(dns.rrset.from_rdata_list(name, 0, list(sigs)))
        return out


class _Answer(Struct, frozen=True):
    """What a reply carries besides the question and EDNS: its rcode and records."""

    rcode: int
    answer: tuple[dnslib.RR, ...]
    auth: tuple[dnslib.RR, ...]


def _rr(owner: dns.name.Name, rdtype: int, rd: dns.rdata.Rdata) -> dnslib.RR:
    return dnslib.RR(owner.to_text(), int(rdtype), ttl=0,
                     rdata=_Raw(rd.to_wire() or b"", rd.to_text()))

