"""The lab DNS's zone (DESIGN §2, §3), pure: no sockets. lab/services/dns.py serves it.

`build_zone()` turns a `World` and a step's DNS-layer attacks into a frozen
`Zone`; `answer()` answers a parsed query from it as a resolver knowing only the lab would;
`wire()` encodes the answer for UDP (truncated to the asker's size) or TCP.

Choices, so scenario authors can rely on them:
- Every record has TTL 0 and every SOA minimum 0: stub resolvers such as c-ares cache by TTL,
  and a stale `_mta-sts` id would silently change the next step (REAL-SENDERS.md).
- The lab is authoritative for the last two labels of every name it knows (`example.test`,
  `attacker.test`, ...): unknown names there are NXDOMAIN, names elsewhere REFUSED (the lab is
  no resolver for the internet), so a parent-domain lookup (D-10) gets an honest NXDOMAIN.
- Records whose owner is a CNAME owner live at the end of the chain (a CNAME owner holds no
  other data, RFC 1034 §3.6.2): `cname = {"_mta-sts.D" = "sts.other.test"}` puts the STS TXT
  at `sts.other.test`, and the answer carries the chain plus the TXT (D-08).
- `drop-sts-txt` / `drop-tlsrpt-txt` make the name vanish: NXDOMAIN, as a forged "no such
  name" from the attacker, the same answer a domain without the record gives (D-09, F-07).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, Protocol

import dnslib
from msgspec import Struct

from ..errors import LabError
from .model import DNS_FAULTS, Attack, TxtRecord, World
from .names import name_key

ATTACKER_MX = "mx.attacker.test"  # spoof-mx: the attacker's own MX host (its A from `addresses`)
MAX_CHAIN = 8  # CNAME hops before we call it a loop and answer SERVFAIL, as resolvers do
UDP_LIMIT = 512  # RFC 1035 §4.2.1, without EDNS
EDNS_LIMIT = 1232  # the DNS flag day 2020 payload size we advertise and honour at most
TXT_CHUNK = 255  # RFC 1035 §3.3: a character-string holds at most 255 bytes
QCLASS_ANY = 255  # RFC 1035 §3.2.5 (dnslib has no name for it)


def type_name(qtype: int) -> str:
    name = dnslib.QTYPE.get(qtype)
    return name if isinstance(name, str) else f"TYPE{qtype}"


def rr_text(rr: dnslib.RR) -> str:
    """One zone-file line, single-spaced (dnslib's own pads columns)."""
    return f"{rr.rname} {rr.ttl} IN {type_name(rr.rtype)} {rr.rdata.toZone()}"


def _origin(name: str) -> str:
    return ".".join(name.split(".")[-2:])


class Record(Struct, frozen=True):
    """One resource record; `name` normalised. Only the fields of its `rtype` are used."""

    name: str
    rtype: str  # A | MX | TXT | CNAME | SOA
    address: str = ""  # A
    target: str = ""  # MX exchange, CNAME target
    preference: int = 0  # MX
    strings: tuple[bytes, ...] = ()  # TXT character-strings, each at most 255 bytes

    def rr(self, owner: Any = None) -> dnslib.RR:
        """The record as dnslib wants it, TTL 0, owned by `owner` (default: its own name)."""
        rdata = _RDATA[self.rtype](self)
        rtype = getattr(dnslib.QTYPE, self.rtype)
        return dnslib.RR(owner if owner is not None else self.name, rtype, ttl=0, rdata=rdata)


_RDATA: dict[str, Callable[[Record], Any]] = {
    "A": lambda r: dnslib.A(r.address),
    "MX": lambda r: dnslib.MX(r.target, r.preference),
    "TXT": lambda r: dnslib.TXT(list(r.strings)),
    "CNAME": lambda r: dnslib.CNAME(r.target),
    # SOA minimum 0: negative answers must not be cached either (RFC 2308 §5)
    "SOA": lambda r: dnslib.SOA(f"ns.{r.name}", f"hostmaster.{r.name}", (1, 0, 0, 0, 0)),
}


class Signed(Protocol):
    """What `answer()` asks of signed zones (lab/core/dnssec.py `SignedZones`)."""

    def covers(self, qname: str) -> bool: ...

    def answer(self, zone: Zone, request: dnslib.DNSRecord) -> dnslib.DNSRecord | None: ...


class Zone(Struct, frozen=True, dict=True):
    """What the lab's DNS knows for one step. Build it with `build_zone()`."""

    origins: tuple[str, ...] = ()
    records: tuple[Record, ...] = ()
    faults: tuple[tuple[str, str], ...] = ()  # (name, servfail | nxdomain | timeout)
    # The zones signed (lab/core/dnssec.py `sign()`), answering for names below `test.`; None:
    # no DNSSEC, the answers below as ever.
    signed: Signed | None = None  # not compared: a zone is what it answers (`__eq__`)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Zone:
            return NotImplemented
        return (self.origins, self.records, self.faults) == (other.origins, other.records,
                                                             other.faults)

    def __hash__(self) -> int:
        return hash((self.origins, self.records, self.faults))

    @cached_property
    def _by_name(self) -> dict[str, tuple[Record, ...]]:
        out: dict[str, list[Record]] = {}
        for r in self.records:
            out.setdefault(r.name, []).append(r)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def _existing(self) -> frozenset[str]:
        # Owners and their ancestors: `_tls.example.test` exists as an empty non-terminal
        # above `_smtp._tls.example.test` and answers NOERROR/no data (RFC 8020).
        names: set[str] = set()
        for name in self._by_name:
            labels = name.split(".")
            names.update(".".join(labels[i:]) for i in range(len(labels)))
        return frozenset(names)

    def at(self, name: str) -> tuple[Record, ...]:
        return self._by_name.get(name_key(name), ())

    def fault(self, name: str) -> str | None:
        return dict(self.faults).get(name_key(name))

    def origin_of(self, name: str) -> str | None:
        """The lab zone `name` belongs to, or None: outside the lab."""
        name = name_key(name)
        hits = [o for o in self.origins if name == o or name.endswith("." + o)]
        return max(hits, key=len) if hits else None

    def exists(self, name: str) -> bool:
        return name_key(name) in self._existing


def _txt_strings(record: TxtRecord) -> tuple[bytes, ...]:
    """Keep the scenario's split exactly; only a string over 255 bytes is cut into 255-byte
    pieces, since one character-string cannot hold more (D-07 senders join them again)."""
    out: list[bytes] = []
    for text in record:
        data = text.encode("utf-8")
        out += [data[i:i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    return tuple(out) or (b"",)  # a TXT RR holds at least one character-string


def _chain_end(name: str, cnames: Mapping[str, str]) -> str:
    seen = {name}
    while name in cnames and len(seen) <= MAX_CHAIN:
        name = cnames[name]
        if name in seen:
            break
        seen.add(name)
    return name


def _exchanges(world: World, spoof: Sequence[Attack]) -> list[tuple[int, str]]:
    """(preference, host) in the world's order; spoof-mx swaps in the attacker's host."""
    out: list[tuple[int, str]] = []
    for index, host in enumerate(name_key(h) for h in world.dns.mx):
        if any(a.applies_to(host) for a in spoof):
            host = ATTACKER_MX
        if host not in [h for _, h in out]:  # two replaced MX hosts make one attacker entry
            out.append((10 * (index + 1), host))
    return out


def _origins(domain: str, names: Sequence[str]) -> tuple[str, ...]:
    # The domain, its last two labels (so a parent lookup, D-10, is NXDOMAIN, not REFUSED),
    # and the last two labels of every other name the zone holds.
    out = [domain]
    for name in [_origin(domain), *names]:
        if _origin(name) not in out and not any(name.endswith("." + o) for o in out):
            out.append(_origin(name))
    return tuple(out)


def build_zone(world: World, addresses: Mapping[str, str], attacks: Sequence[Attack] = ()) -> Zone:
    """The zone for `world` with the DNS-layer `attacks` applied.

    `addresses` maps host names (MX hosts, `mta-sts.D`, `tlsrpt.D`, the attacker's MX) to IPv4
    addresses; each gets an A record."""
    domain = name_key(world.domain)
    kinds = {a.kind for a in attacks}
    dropped = {owner for kind, owner in (("drop-sts-txt", f"_mta-sts.{domain}"),
                                         ("drop-tlsrpt-txt", f"_smtp._tls.{domain}"))
               if kind in kinds}
    cnames = {name_key(o): name_key(t) for o, t in world.dns.cname if name_key(o) not in dropped}
    records: list[Record] = []

    def place(owner: str, rtype: str, **data: Any) -> None:
        records.append(Record(_chain_end(name_key(owner), cnames), rtype, **data))

    spoof = [a for a in attacks if a.kind == "spoof-mx"]
    if spoof and ATTACKER_MX not in {name_key(h) for h in addresses}:
        raise LabError(f"spoof-mx needs an address for {ATTACKER_MX!r} in the lab's addresses")
    for preference, host in _exchanges(world, spoof):
        place(domain, "MX", target=host, preference=preference)
    for host, ip in addresses.items():
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise LabError(f"address of {host!r} must be IPv4, got {ip!r}") from None
        place(host, "A", address=ip)
    for owner, txts in ((f"_mta-sts.{domain}", world.sts_records()),
                        (f"_smtp._tls.{domain}", world.tlsrpt_records())):
        for txt in txts if owner not in dropped else ():
            place(owner, "TXT", strings=_txt_strings(txt))
    records += [Record(o, "CNAME", target=t) for o, t in cnames.items()]
    faults = tuple((name_key(n), f) for n, f in world.dns.fault)
    for name, kind in faults:
        if kind not in DNS_FAULTS:
            allowed = ", ".join(DNS_FAULTS)
            raise LabError(f"DNS fault for {name!r} must be one of {allowed}, got {kind!r}")
    names = [r.name for r in records] + [r.target for r in records if r.target]
    origins = _origins(domain, names + [n for n, _ in faults])
    records += [Record(o, "SOA") for o in origins]
    return Zone(origins=origins, records=tuple(records), faults=faults)


def is_query(header: dnslib.DNSHeader) -> bool:
    """Whether a packet with `header` may be answered: never a response (QR set), so the lab
    neither loops nor reflects. lab/core/dnsserve.py applies the same rule to broken packets."""
    return not header.qr


def _fail(reply: dnslib.DNSRecord, rcode: int) -> dnslib.DNSRecord:
    reply.rr = []
    reply.auth = []
    reply.header.rcode = rcode
    return reply


def answer(zone: Zone, request: dnslib.DNSRecord) -> dnslib.DNSRecord | None:
    """The reply to `request`, or None when the lab must stay silent (a `timeout` fault, or a
    packet that is itself a response)."""
    if not is_query(request.header):
        return None
    reply = request.reply()
    if request.header.opcode != dnslib.OPCODE.QUERY:
        return _fail(reply, dnslib.RCODE.NOTIMP)
    if len(request.questions) != 1:
        return _fail(reply, dnslib.RCODE.FORMERR)
    q = request.q
    if q.qclass not in (dnslib.CLASS.IN, QCLASS_ANY):
        return _fail(reply, dnslib.RCODE.REFUSED)
    if zone.signed is not None and zone.signed.covers(str(q.qname)):
        return zone.signed.answer(zone, request)  # DNSSEC (DESIGN §9)
    owner: Any = q.qname  # the first owner echoes the asker's spelling (0x20 case)
    name = name_key(str(q.qname))
    visited: set[str] = set()
    while True:
        fault = zone.fault(name)
        if fault == "timeout":
            return None
        if fault == "servfail":
            return _fail(reply, dnslib.RCODE.SERVFAIL)
        origin = zone.origin_of(name)
        if origin is None:
            # The first name outside the lab is refused; a CNAME leading out ends the chain
            # with what we know, as a resolver that cannot reach the target would.
            return reply if reply.rr else _fail(reply, dnslib.RCODE.REFUSED)
        here = zone.at(name) if fault is None else ()
        cname = next((r for r in here if r.rtype == "CNAME"), None)
        if cname is not None and q.qtype not in (dnslib.QTYPE.CNAME, dnslib.QTYPE.ANY):
            if name in visited or len(visited) >= MAX_CHAIN:
                return _fail(reply, dnslib.RCODE.SERVFAIL)
            visited.add(name)
            reply.add_answer(cname.rr(owner))
            owner, name = cname.target, cname.target
            continue
        hits = [r for r in here if q.qtype == dnslib.QTYPE.ANY or r.rtype == type_name(q.qtype)]
        reply.add_answer(*(r.rr(owner) for r in hits))
        if not hits:
            if fault == "nxdomain" or not zone.exists(name):
                reply.header.rcode = dnslib.RCODE.NXDOMAIN
            reply.add_auth(Record(origin, "SOA").rr())
        return reply


def wire(request: dnslib.DNSRecord, reply: dnslib.DNSRecord, transport: str) -> bytes:
    """`reply` packed for `transport`: over UDP, cut to the size the asker can take (512, or
    its EDNS payload size up to 1232) with TC set, so it retries over TCP (RFC 7766)."""
    opt = next((r for r in request.ar if r.rtype == dnslib.QTYPE.OPT), None)
    if opt is not None and not any(r.rtype == dnslib.QTYPE.OPT for r in reply.ar):
        reply.add_ar(dnslib.EDNS0(udp_len=EDNS_LIMIT))
    data: bytes = reply.pack()
    limit = max(UDP_LIMIT, min(opt.rclass, EDNS_LIMIT)) if opt is not None else UDP_LIMIT
    if transport == "tcp":
        limit = 0xFFFF
    if len(data) > limit:
        header = dnslib.DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1)
        cut = dnslib.DNSRecord(header, q=reply.q if reply.questions else None)
        if opt is not None:
            cut.add_ar(dnslib.EDNS0(udp_len=EDNS_LIMIT, flags="do" if opt.ttl & 0x8000 else ""))
        data = cut.pack()
    return data
