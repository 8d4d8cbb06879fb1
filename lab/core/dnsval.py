"""A DNSSEC validator (RFC 4035 §5) for the reference sender, pure: it asks, the shell answers.

`lookup(anchor, name, rdtype, now)` is a generator in the style of h11: it yields the queries it
needs, `(name, rdtype)`, and is sent back the response (a `dns.message.Message`, or None when
the query got no answer); it returns a `Lookup` saying what the data is and how secure
(RFC 4033 §5, RFC 7672 §2.1.1):

- `secure`: a chain of signatures from the trust anchor (the lab's `test.` DS) to the data, or
  an NSEC proof that the name or type does not exist;
- `insecure`: a signed proof that a delegation on the way has no DS (an unsigned zone);
- `bogus`: signatures were expected and are missing, expired, made with another key, or the
  denial has no valid proof;
- `indeterminate`: the lookup failed (SERVFAIL, REFUSED, no answer), nothing is known.

It walks the zone cuts from the anchor down, asking for the DS at each ancestor of the name,
so a stripped RRSIG is never mistaken for an unsigned zone.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rrset
from msgspec import Struct, field

IN = dns.rdataclass.IN
T = dns.rdatatype.RdataType
SECURITY = ("secure", "insecure", "bogus", "indeterminate")

Query = tuple[dns.name.Name, int]
Ask = Generator[Query, "dns.message.Message | None", "Lookup"]


class Lookup(Struct, frozen=True):
    """The validated result of one lookup."""

    security: str  # secure | insecure | bogus | indeterminate
    rcode: str = "NOERROR"  # NOERROR | NXDOMAIN | SERVFAIL | ... ("" when no answer came)
    rrset: dns.rrset.RRset | None = None  # the data at the end of any CNAME chain
    why: str = ""  # for bogus / indeterminate: what failed
    cnames: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        """Bogus or indeterminate: RFC 7672 §2.1.1 treats both as a failed lookup."""
        return self.security in ("bogus", "indeterminate")

    @property
    def empty(self) -> bool:
        return self.rrset is None or len(self.rrset) == 0


class _Bogus(Exception):
    pass


class _Insecure(Exception):
    pass


def _type(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def _ancestors(name: dns.name.Name, top: dns.name.Name) -> list[dns.name.Name]:
    """The names strictly below `top` down to `name`, top-down."""
    out = []
    while name != top and name.is_subdomain(top):
        out.append(name)
        name = name.parent()
    return list(reversed(out))


def _rrset(resp: dns.message.Message, section: Sequence[dns.rrset.RRset], name: dns.name.Name,
           rdtype: int, covers: int = T.NONE) -> dns.rrset.RRset | None:
    for r in section:
        if r.name == name and r.rdtype == rdtype and r.covers == covers:
            return r
    return None


def _verify(rrset: dns.rrset.RRset, resp: dns.message.Message, section: Sequence[dns.rrset.RRset],
            zone: dns.name.Name, keys: dns.rrset.RRset, now: float) -> None:
    sigs = _rrset(resp, section, rrset.name, T.RRSIG, rrset.rdtype)
    if sigs is None:
        raise _Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: no RRSIG "
                     f"although {zone} is signed")
    failure = _validated(rrset, sigs, zone, keys, now)
    if failure is not None:
        raise _Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: "
                     f"signature invalid ({failure})")


# What dnspython's `validate` said of an RRset, its RRSIGs and the zone's keys, by the identity
# of those objects (kept with the answer, so no id is reused while it is remembered). A shell
# that parses each distinct reply once (the reference sender's) hands the chain's DS, DNSKEY
# and NSEC sets over as the same objects lookup after lookup. Only what was decided with `now`
# inside every signature's validity window is kept, and used only while `now` is inside them
# again: there the answer depends on the records and signatures alone, which are the same.
_VERIFIED: dict[tuple[object, ...], tuple[tuple[object, ...], str | None]] = {}
VERIFIED_MAX = 4096


def _validated(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset, zone: dns.name.Name,
               keys: dns.rrset.RRset, now: float) -> str | None:
    """None when a signature of `sigs` by one of `keys` validates `rrset`, else why not."""
    held = (rrset, sigs, *keys)
    key = (zone, *map(id, held))
    timely = all(s.inception <= now <= s.expiration for s in sigs)
    if timely and key in _VERIFIED:
        was, failure = _VERIFIED[key]
        if all(a is b for a, b in zip(was, held, strict=True)):
            return failure
    try:
        dns.dnssec.validate(rrset, sigs, {zone: keys}, now=now)
        failure = None
    except dns.exception.ValidationFailure as exc:
        failure = str(exc)
    if timely and len(_VERIFIED) < VERIFIED_MAX:
        _VERIFIED[key] = (held, failure)
    return failure


def _nsecs(resp: dns.message.Message, zone: dns.name.Name, keys: dns.rrset.RRset,
           now: float) -> list[tuple[dns.name.Name, dns.rdtypes.ANY.NSEC.NSEC]]:
    out = []
    for r in resp.authority:
        if r.rdtype == T.NSEC and r.name.is_subdomain(zone):
            _verify(r, resp, resp.authority, zone, keys, now)
            out += [(r.name, rd) for rd in r]
    return out


def _types(nsec: dns.rdtypes.ANY.NSEC.NSEC) -> set[int]:
    out: set[int] = set()
    for window, bitmap in nsec.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.add(window * 256 + i * 8 + bit)
    return out


def _covers(owner: dns.name.Name, nsec: dns.rdtypes.ANY.NSEC.NSEC, name: dns.name.Name,
            zone: dns.name.Name) -> bool:
    """The NSEC at `owner` proves `name` does not exist (RFC 4035 §5.4): owner < name < next
    (the last NSEC of the zone wraps to the apex), and it is not from above a delegation."""
    types = _types(nsec)
    if T.NS in types and T.SOA not in types and name.is_subdomain(owner):
        return False  # a parent-side NSEC at a cut says nothing below it
    if not owner < name:
        return False
    return bool(name < nsec.next or nsec.next == zone)


def _denial(resp: dns.message.Message, name: dns.name.Name, rdtype: int, zone: dns.name.Name,
            keys: dns.rrset.RRset, now: float) -> None:
    """Raise _Bogus unless the response proves the answer's absence (RFC 4035 §5.4)."""
    proofs = _nsecs(resp, zone, keys, now)
    if resp.rcode() == dns.rcode.NXDOMAIN:
        cover = next(((o, n) for o, n in proofs if _covers(o, n, name, zone)), None)
        if cover is None:
            raise _Bogus(f"{name}: NXDOMAIN with no NSEC proof")
        # The closest encloser is the longest ancestor the covering NSEC shares with the name;
        # the wildcard below it must be denied too, or it would have answered.
        common = max(name.fullcompare(cover[0])[2], name.fullcompare(cover[1].next)[2])
        wildcard = dns.name.Name(("*",) + name.labels[-common:])
        if not any(_covers(o, n, wildcard, zone) for o, n in proofs):
            raise _Bogus(f"{name}: NXDOMAIN with no proof that no wildcard applies")
        return
    for owner, nsec in proofs:
        if owner == name:
            types = _types(nsec)
            if rdtype in types or T.CNAME in types:
                raise _Bogus(f"{name}: the NSEC says {_type(rdtype)} exists")
            return
        if _covers(owner, nsec, name, zone) and nsec.next.is_subdomain(name):
            return  # an empty non-terminal (RFC 4035 §3.1.3.2 note)
    raise _Bogus(f"{name} {_type(rdtype)}: no data and no NSEC proof")


class Validator:
    """The state of one validation: the anchor, the clock, the keys proven so far."""

    def __init__(self, anchor: Sequence[dns.rdata.Rdata], now: float) -> None:
        self.anchor_ds = list(anchor)
        self.now = now
        self.keys: dict[dns.name.Name, dns.rrset.RRset] = {}

    def _zone_keys(self, zone: dns.name.Name, ds: Sequence[dns.rdata.Rdata]
                   ) -> Generator[Query, dns.message.Message | None, dns.rrset.RRset]:
        """The DNSKEY RRset of `zone`, proven by one of `ds` (RFC 4035 §5.2)."""
        if zone in self.keys:
            return self.keys[zone]
        resp = yield (zone, T.DNSKEY)
        if resp is None or resp.rcode() != dns.rcode.NOERROR:
            raise _Bogus(f"{zone} DNSKEY: no answer")
        keys = _rrset(resp, resp.answer, zone, T.DNSKEY)
        if keys is None:
            raise _Bogus(f"{zone}: no DNSKEY although the parent has a DS")
        for key in keys:
            for d in ds:
                try:
                    made = dns.dnssec.make_ds(zone, key, d.digest_type)  # type: ignore[attr-defined]
                except (dns.exception.UnsupportedAlgorithm, ValueError):
                    continue
                if made == d:
                    signer = dns.rrset.from_rdata(zone, keys.ttl, key)
                    _verify(keys, resp, resp.answer, zone, signer, self.now)
                    self.keys[zone] = keys
                    return keys
        raise _Bogus(f"{zone}: no DNSKEY matches the DS at the parent")

    def zone(self, name: dns.name.Name
             ) -> Generator[Query, dns.message.Message | None, tuple[dns.name.Name, dns.rrset.RRset]]:
        """The deepest secure zone above `name`, with its keys; raises _Insecure below an
        unsigned delegation, _Bogus when the chain breaks."""
        top = dns.name.from_text("test.")
        zone = top
        keys = yield from self._zone_keys(top, self.anchor_ds)
        for candidate in _ancestors(name, top):
            resp = yield (candidate, T.DS)
            if resp is None or resp.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                raise _Bogus(f"{candidate} DS: no answer")
            ds = _rrset(resp, resp.answer, candidate, T.DS)
            if ds is not None:
                _verify(ds, resp, resp.answer, zone, keys, self.now)
                keys = yield from self._zone_keys(candidate, list(ds))
                zone = candidate
                continue
            _denial(resp, candidate, T.DS, zone, keys, self.now)
            at = [n for o, n in _nsecs(resp, zone, keys, self.now) if o == candidate]
            if at and T.NS in _types(at[0]):
                raise _Insecure(f"{candidate}: delegated with no DS (signed proof)")
            if resp.rcode() == dns.rcode.NXDOMAIN:
                break  # nothing exists below: the lookup itself will prove it
        return zone, keys


def lookup(anchor: Sequence[dns.rdata.Rdata], name: dns.name.Name | str, rdtype: int,
           now: float) -> Ask:
    """Validate `rdtype` at `name` (CNAMEs followed); see the module docstring."""
    v = Validator(anchor, now)
    qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
    cnames: list[str] = []
    insecure = False
    for _ in range(8):
        resp = yield (qname, rdtype)
        if resp is None:
            return Lookup("indeterminate", "", why=f"{qname}: no answer")
        rcode = dns.rcode.to_text(resp.rcode())
        if resp.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return Lookup("indeterminate", rcode, why=f"{qname}: {rcode}")
        try:
            zone, keys = yield from v.zone(qname)
        except _Insecure:
            insecure = True
        except _Bogus as exc:
            return Lookup("bogus", rcode, why=str(exc))
        data = _rrset(resp, resp.answer, qname, rdtype)
        cname = _rrset(resp, resp.answer, qname, T.CNAME) if rdtype != T.CNAME else None
        try:
            if not insecure:
                if data is not None:
                    _verify(data, resp, resp.answer, zone, keys, now)
                elif cname is not None:
                    _verify(cname, resp, resp.answer, zone, keys, now)
                else:
                    _denial(resp, qname, rdtype, zone, keys, now)
        except _Bogus as exc:
            return Lookup("bogus", rcode, why=str(exc))
        if data is None and cname is not None:
            cnames.append(qname.to_text())
            qname = cname[0].target
            continue  # the target may sit in another zone: validate it on its own
        return Lookup("insecure" if insecure else "secure", rcode, data, cnames=tuple(cnames))
    return Lookup("bogus", "", why=f"{name}: CNAME chain too long")


def parse_anchor(text: str) -> list[dns.rdata.Rdata]:
    """The DS records of a trust anchor file (zone-file lines; DNSKEY lines are skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "DS":
            out.append(dns.rdata.from_text(IN, T.DS, " ".join(parts[3:])))
    return out
