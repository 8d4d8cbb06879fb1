"""The DNSSEC evidence of a DANE step (issue 16, docs/dane.md), pure: what the attacker did to
the signed data, the certificate a TLS handshake showed set against the published TLSA records,
and the DNS answers that matter read back from the query log, each with its signature state.

`tampering()` and `shown_certificate()` run when a step is collected (lab/harness/lab.py) and
their results go into the run record (`dane`, lab/core/recordparts.py `DaneEvidence`);
`answer_rows()` reads a recorded step, so a report of an older record shows the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msgspec import Struct

from .dane import Tlsa, authenticate
from .dnssec import tlsa_owner
from .model import DANE_DNS_ATTACKS, Attack
from .model import Tlsa as TlsaTuple
from .names import name_key
from .recordparts import DaneEvidence, DnsQuery, ShownCert, Tampering, TlsaEntry


def tlsa_entries(records: Mapping[str, Sequence[TlsaTuple]]) -> tuple[TlsaEntry, ...]:
    """MX host -> records (lab/core/dane.py `published_tlsa`, `forged_tlsa`) as record parts."""
    return tuple(TlsaEntry(name_key(host), u, s, m, data.hex())
                 for host, rs in records.items() for u, s, m, data in rs)


# ---- what the DNS-layer attacks did (lab/core/dnssec.py `_attack`, in words) ----

def tampering(domain: str, mx: Sequence[str], attacks: Sequence[Attack],
              forged: Sequence[TlsaEntry], zones: Sequence[str],
              signed: Sequence[str]) -> tuple[Tampering, ...]:
    """What each DNS-layer DANE attack of the step did, name by name. `zones`: the lab's zone
    origins; `signed`: those that carry signatures (the attacks on signatures act only there,
    as lab/core/dnssec.py `sign()` does)."""
    origins = sorted({name_key(z) for z in zones} | {name_key(z) for z in signed})
    signed_set = {name_key(z) for z in signed}
    hosts = [name_key(h) for h in mx]

    def zone_of(name: str) -> str | None:
        """The signed zone `name` lies in (None: its zone is unsigned)."""
        hits = [z for z in origins if name == z or name.endswith("." + z)]
        best = max(hits, key=len) if hits else None
        return best if best in signed_set else None

    home = zone_of(name_key(domain))  # the recipient's zone, when signed
    out: list[Tampering] = []
    for a in attacks:
        if a.kind not in DANE_DNS_ATTACKS:
            continue
        mine = [h for h in hosts if a.applies_to(h)]
        if a.kind == "forge-tlsa":
            for h in mine:
                records = ", ".join(f.text() for f in forged if f.host == h) or "nothing"
                key = ("re-signed with the attacker's own key, not the zone's"
                       if zone_of(tlsa_owner(h)) else "unsigned, as the zone is")
                out.append(Tampering(a.kind, tlsa_owner(h), "TLSA",
                                     f"genuine TLSA replaced by {records} (the attacker's "
                                     f"certificate); {key}"))
        elif a.kind == "strip-rrsig":
            if a.hosts is None:
                out += [Tampering(a.kind, "*." + z, "*", "every RRSIG of the zone removed")
                        for z in sorted(signed_set) if z != "test"]
            else:
                for h in mine:
                    out += [Tampering(a.kind, name, "*", "RRSIG removed")
                            for name in (h, tlsa_owner(h)) if zone_of(name)]
        elif a.kind == "drop-tlsa":
            out += [Tampering(a.kind, tlsa_owner(h), "TLSA", "TLSA removed: NODATA without "
                              "the signed NSEC that would prove the absence"
                              if zone_of(tlsa_owner(h)) else "TLSA removed: NODATA")
                    for h in mine]
        elif a.kind == "expire-rrsig":
            out += [Tampering(a.kind, tlsa_owner(h), "TLSA", "signature replaced by a genuine "
                              "one that expired a day ago (a replay)")
                    for h in mine if zone_of(tlsa_owner(h))]
        elif home is not None and home != "test":
            if a.kind == "remove-ds":
                out += [Tampering(a.kind, home, "DS", "DS deleted at the parent, with its "
                                  "signature and NSEC: no proof the delegation is signed"),
                        Tampering(a.kind, "*." + home, "*", "every RRSIG and the DNSKEY of "
                                  "the zone removed: it looks unsigned")]
            else:  # wrong-ds
                out += [Tampering(a.kind, home, "DS", "DS replaced by one for the attacker's "
                                  "key, signed with the attacker's key"),
                        Tampering(a.kind, "*." + home, "*", "the whole zone re-signed with "
                                  "the attacker's key")]
    return tuple(out)


def tampered(t: Tampering, qname: str, qtype: str) -> bool:
    """`t` acted on the answer to (qname, qtype)."""
    name = name_key(qname)
    if t.rtype not in ("*", qtype):
        return False
    if t.name.startswith("*."):
        zone = t.name[2:]
        if name == zone and qtype == "DS":
            return False  # the DS at the apex lives in the parent zone (RFC 4035 §3.1.4.1)
        return name == zone or name.endswith("." + zone)
    return name == name_key(t.name)


# ---- the certificate the sender was shown, against the TLSA records ----

def _tlsa(e: TlsaEntry) -> Tlsa:
    try:
        data = bytes.fromhex(e.data)
    except ValueError:
        data = b""
    return Tlsa(e.usage, e.selector, e.mtype, data)


def shown_certificate(connection: int, mx: str, presented_by: str, variant: str,
                      chain_der: Sequence[bytes], published: Sequence[TlsaEntry],
                      forged: Sequence[TlsaEntry], names: Sequence[str], now: float) -> ShownCert:
    """The facts of the chain (leaf first) one handshake presented for `mx`, and whether a usable
    record published for `mx` authenticates it (RFC 7672 §3.1, `dane.authenticate`, with the
    reference identifiers `names`): which one, or why none."""
    leaf = x509.load_der_x509_certificate(chain_der[0])
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    host = name_key(mx)
    mine = [e for e in published if e.host == host]
    matched = next((e for e in mine if authenticate([_tlsa(e)], chain_der, names, now) is None),
                   None)
    if matched is not None:
        why = f"matches the published {abbreviate(matched.text())}"
    elif not mine:
        why = f"no TLSA record is published for {host}"
    else:
        why = authenticate([_tlsa(e) for e in mine], chain_der, names, now) or "no match"
    fake = next((e for e in forged if e.host == host
                 and authenticate([_tlsa(e)], chain_der, names, now) is None), None)
    return ShownCert(connection, host, presented_by, variant, leaf.subject.rfc4514_string(),
                     leaf.issuer.rfc4514_string(), hashlib.sha256(spki).hexdigest(),
                     matched is not None, matched.text() if matched else None, why,
                     fake.text() if fake else None)


# ---- the DNS answers that matter, with their signature state (for the report) ----

SIGNATURE_STATES = ("signed", "unsigned", "expired", "wrong-key", "proved-absent",
                    "no-proof", "no-records", "failed")


class AnswerRow(Struct, frozen=True):
    """One DNS answer the sender got, as the story shows it. `ok`: True a good sign for DANE
    (a valid signature, a proved absence), False a bad one, None neither (an unsigned zone)."""

    qname: str
    qtype: str
    rcode: str
    records: tuple[str, ...]  # the records of the asked type, rdata only
    state: str  # one of SIGNATURE_STATES
    detail: str
    ok: bool | None
    attacker: tuple[str, ...]  # what the attacker did to this answer (`Tampering.what`)
    times: int = 1  # the same answer this many times
    attacks: tuple[str, ...] = ()  # the attacks that did it (`Tampering.attack`)

    @property
    def forged(self) -> bool:
        return "forge-tlsa" in self.attacks


def _when(stamp: str) -> float | None:
    try:
        return dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _day(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class _Sig(Struct, frozen=True):
    covered: str
    expiration: float | None
    inception: float | None
    key_tag: int
    signer: str


def _parse(line: str) -> tuple[str, str, list[str]]:
    """(owner, type, rdata fields) of a zone-file line `owner ttl class type rdata...`."""
    fields = line.split()
    if len(fields) < 4:
        return "", "", []
    return name_key(fields[0]), fields[3].upper(), fields[4:]


def _sigs(lines: Sequence[str]) -> list[_Sig]:
    out = []
    for line in lines:
        _, rtype, rd = _parse(line)
        if rtype == "RRSIG" and len(rd) >= 8 and rd[6].isdigit():
            out.append(_Sig(rd[0].upper(), _when(rd[4]), _when(rd[5]), int(rd[6]), name_key(rd[7])))
    return out


def rdata(line: str) -> str:
    """The rdata of a zone-file line."""
    return " ".join(_parse(line)[2])


def abbreviate(text: str, keep: int = 3, head: int = 16, tail: int = 8) -> str:
    """`keep` leading fields as they are, the rest joined and cut to `head`…`tail` characters:
    enough of a digest to tell two apart."""
    fields = text.split()
    rest = "".join(fields[keep:])
    if len(rest) > head + tail + 1:
        rest = rest[:head] + "…" + rest[-tail:]
    return " ".join([*fields[:keep], rest] if rest else fields[:keep])


_FIXED = {"TLSA": 3, "DS": 3, "DNSKEY": 3}


def _state(q: DnsQuery, keys: Mapping[str, int]) -> tuple[str, str, bool | None]:
    own = [_sig for _sig in _sigs(q.answers) if _sig.covered == q.qtype]
    records = [a for a in q.answers if _parse(a)[1] == q.qtype]
    if q.rcode not in ("NOERROR", "NXDOMAIN"):
        return "failed", f"no answer: {q.rcode}", False
    if not records:
        proofs = [a for a in q.authority if _parse(a)[1] == "NSEC"]
        signed_proof = any(s.covered == "NSEC" for s in _sigs(q.authority))
        what = "no such name" if q.rcode == "NXDOMAIN" else "no records of this type"
        if proofs and signed_proof:
            return "proved-absent", f"{what}, proved by a signed NSEC", True
        if q.authority and not proofs and any(_parse(a)[1] == "SOA" for a in q.authority) \
                and any(s.covered == "SOA" for s in _sigs(q.authority)):
            return "no-proof", f"{what}, and no NSEC to prove it", False
        return "no-records", what, None
    if not own:
        return "unsigned", "no RRSIG", None
    for s in own:
        if s.expiration is not None and s.expiration < q.time:
            return "expired", f"RRSIG by {s.signer} expired {_day(s.expiration)}", False
    for s in own:
        genuine = keys.get(s.signer)
        if genuine is not None and s.key_tag != genuine:
            return ("wrong-key", f"RRSIG by key {s.key_tag}, not {s.signer}'s key {genuine}",
                    False)
    s = own[0]
    until = f", valid until {_day(s.expiration)}" if s.expiration else ""
    return "signed", f"RRSIG by {s.signer} key {s.key_tag}{until}", True


def _relevant(q: DnsQuery, dane: DaneEvidence) -> bool:
    name = name_key(q.qname)
    hosts = {name_key(h) for h in dane.mx}
    zones = {k.zone for k in dane.keys} | {name_key(dane.domain), "test"}
    if q.qtype == "MX":
        return name == name_key(dane.domain)
    if q.qtype in ("A", "AAAA"):
        return name in hosts
    if q.qtype == "TLSA":
        return any(name == tlsa_owner(h) for h in hosts)
    if q.qtype in ("DS", "DNSKEY"):
        return name in zones
    return False


def answer_rows(queries: Sequence[DnsQuery], dane: DaneEvidence) -> list[AnswerRow]:
    """The answers to the names that matter for DANE (the domain's MX, its hosts' addresses
    and TLSA records, the zones' DS and DNSKEY), first asked first, one row per distinct
    answer."""
    keys = {k.zone: k.key_tag for k in dane.keys}
    rows: list[AnswerRow] = []
    seen: dict[tuple[str, str, str, tuple[str, ...]], int] = {}
    for q in queries:
        if not _relevant(q, dane):
            continue
        ident = (name_key(q.qname), q.qtype, q.rcode, q.answers)
        if ident in seen:
            i = seen[ident]
            old = rows[i]
            rows[i] = AnswerRow(old.qname, old.qtype, old.rcode, old.records, old.state,
                                old.detail, old.ok, old.attacker, old.times + 1, old.attacks)
            continue
        seen[ident] = len(rows)
        state, detail, ok = _state(q, keys)
        records = tuple(rdata(a) for a in q.answers if _parse(a)[1] == q.qtype)
        did = [t for t in dane.tampering if tampered(t, q.qname, q.qtype)]
        rows.append(AnswerRow(name_key(q.qname), q.qtype, q.rcode, records, state, detail, ok,
                              tuple(t.what for t in did), 1, tuple(t.attack for t in did)))
    return rows


def short_record(qtype: str, text: str) -> str:
    """A record's rdata cut for a table cell (digests and keys abbreviated)."""
    return abbreviate(text, _FIXED.get(qtype, len(text.split())))
