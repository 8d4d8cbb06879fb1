"""Fake DNS for the lab (DESIGN §2, §3): the scenario's zone and a thin server for it.

Pure, no sockets: `build_zone()` turns a `World` and a step's DNS-layer attacks into a frozen
`Zone`; `answer()` answers a parsed query from it as a resolver knowing only the lab would.
Shell: `DnsServer` moves bytes over UDP and TCP on one port and records every query.

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

import asyncio
import contextlib
import errno
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, cast

import dnslib
from dnslib.buffer import BufferError as DnsBufferError
from dnslib.dns import DNSError
from dnslib.label import DNSLabelError

from lab.errors import LabError, ServiceError
from lab.model import DNS_FAULTS, Attack, TxtRecord, World
from lab.services.base import Service, require_lab_address

ATTACKER_MX = "mx.attacker.test"  # spoof-mx: the attacker's own MX host (its A from `addresses`)
MAX_CHAIN = 8  # CNAME hops before we call it a loop and answer SERVFAIL, as resolvers do
UDP_LIMIT = 512  # RFC 1035 §4.2.1, without EDNS
EDNS_LIMIT = 1232  # the DNS flag day 2020 payload size we advertise and honour at most
TXT_CHUNK = 255  # RFC 1035 §3.3: a character-string holds at most 255 bytes
BIND_ATTEMPTS = 5
QCLASS_ANY = 255  # RFC 1035 §3.2.5 (dnslib has no name for it)


def _norm(name: str) -> str:
    """Names compare case-insensitively, with or without the trailing dot."""
    return name.lower().rstrip(".")


def _type_name(qtype: int) -> str:
    name = dnslib.QTYPE.get(qtype)
    return name if isinstance(name, str) else f"TYPE{qtype}"


def _text(rr: dnslib.RR) -> str:
    """One zone-file line, single-spaced (dnslib's own pads columns)."""
    return f"{rr.rname} {rr.ttl} IN {_type_name(rr.rtype)} {rr.rdata.toZone()}"


def _origin(name: str) -> str:
    return ".".join(name.split(".")[-2:])


@dataclass(frozen=True)
class Record:
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


@dataclass(frozen=True)
class Zone:
    """What the lab's DNS knows for one step. Build it with `build_zone()`."""

    origins: tuple[str, ...] = ()
    records: tuple[Record, ...] = ()
    faults: tuple[tuple[str, str], ...] = ()  # (name, servfail | nxdomain | timeout)

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
        return self._by_name.get(_norm(name), ())

    def fault(self, name: str) -> str | None:
        return dict(self.faults).get(_norm(name))

    def origin_of(self, name: str) -> str | None:
        """The lab zone `name` belongs to, or None: outside the lab."""
        name = _norm(name)
        hits = [o for o in self.origins if name == o or name.endswith("." + o)]
        return max(hits, key=len) if hits else None

    def exists(self, name: str) -> bool:
        return _norm(name) in self._existing


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
    for index, host in enumerate(_norm(h) for h in world.dns.mx):
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
    domain = _norm(world.domain)
    kinds = {a.kind for a in attacks}
    dropped = {owner for kind, owner in (("drop-sts-txt", f"_mta-sts.{domain}"),
                                         ("drop-tlsrpt-txt", f"_smtp._tls.{domain}"))
               if kind in kinds}
    cnames = {_norm(o): _norm(t) for o, t in world.dns.cname if _norm(o) not in dropped}
    records: list[Record] = []

    def place(owner: str, rtype: str, **data: Any) -> None:
        records.append(Record(_chain_end(_norm(owner), cnames), rtype, **data))

    spoof = [a for a in attacks if a.kind == "spoof-mx"]
    if spoof and ATTACKER_MX not in {_norm(h) for h in addresses}:
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
    faults = tuple((_norm(n), f) for n, f in world.dns.fault)
    for name, kind in faults:
        if kind not in DNS_FAULTS:
            allowed = ", ".join(DNS_FAULTS)
            raise LabError(f"DNS fault for {name!r} must be one of {allowed}, got {kind!r}")
    names = [r.name for r in records] + [r.target for r in records if r.target]
    origins = _origins(domain, names + [n for n, _ in faults])
    records += [Record(o, "SOA") for o in origins]
    return Zone(origins=origins, records=tuple(records), faults=faults)


def _fail(reply: dnslib.DNSRecord, rcode: int) -> dnslib.DNSRecord:
    reply.rr = []
    reply.auth = []
    reply.header.rcode = rcode
    return reply


def answer(zone: Zone, request: dnslib.DNSRecord) -> dnslib.DNSRecord | None:
    """The reply to `request`, or None when the lab must stay silent (a `timeout` fault, or a
    packet that is itself a response)."""
    if request.header.qr:
        return None  # never answer answers: no loops, no reflection
    reply = request.reply()
    if request.header.opcode != dnslib.OPCODE.QUERY:
        return _fail(reply, dnslib.RCODE.NOTIMP)
    if len(request.questions) != 1:
        return _fail(reply, dnslib.RCODE.FORMERR)
    q = request.q
    if q.qclass not in (dnslib.CLASS.IN, QCLASS_ANY):
        return _fail(reply, dnslib.RCODE.REFUSED)
    owner: Any = q.qname  # the first owner echoes the asker's spelling (0x20 case)
    name = _norm(str(q.qname))
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
        hits = [r for r in here if q.qtype == dnslib.QTYPE.ANY or r.rtype == _type_name(q.qtype)]
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
    if opt is not None:
        reply.add_ar(dnslib.EDNS0(udp_len=EDNS_LIMIT))
    data: bytes = reply.pack()
    limit = max(UDP_LIMIT, min(opt.rclass, EDNS_LIMIT)) if opt is not None else UDP_LIMIT
    if transport == "tcp":
        limit = 0xFFFF
    if len(data) > limit:
        header = dnslib.DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1)
        cut = dnslib.DNSRecord(header, q=reply.q if reply.questions else None)
        if opt is not None:
            cut.add_ar(dnslib.EDNS0(udp_len=EDNS_LIMIT))
        data = cut.pack()
    return data


@dataclass(frozen=True)
class DnsQuery:
    """One query the lab's DNS saw. `rcode` is the rcode sent, `TIMEOUT` when a fault kept the
    lab silent, or `DROPPED` for a packet not worth an answer (too broken, or a response)."""

    time: float  # Unix time it arrived
    transport: str  # udp | tcp
    qname: str
    qtype: str
    rcode: str
    answers: tuple[str, ...] = ()  # the answer section, one zone-file line per record
    note: str = ""  # what was odd: a malformed packet, an answer truncated for UDP
    client: str = ""  # host:port of the asker


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not a DatagramTransport subclass on every Python (3.11's selector transport is not).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        out = self._server.respond(data, "udp", f"{addr[0]}:{addr[1]}")
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


class DnsServer(Service):
    """The lab's DNS over UDP and TCP on one port (`port` after `start()`).

    Serves `zone` (swap it between steps with `set_zone`) and records every query; read and
    clear the log with `take_queries()`."""

    name = "dns"

    def __init__(self, zone: Zone | None = None, *, bind_host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__()
        self.bind_host = bind_host
        self.port = port
        self.zone = zone or Zone()
        self._queries: list[DnsQuery] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one per TCP connection
        self._writers: set[asyncio.StreamWriter] = set()

    def set_zone(self, zone: Zone) -> None:
        self.zone = zone

    def take_queries(self) -> list[DnsQuery]:
        """Every query since the last call, oldest first; clears the log."""
        out, self._queries = self._queries, []
        return out

    async def _start(self) -> None:
        host = require_lab_address(self.bind_host)
        loop = asyncio.get_running_loop()
        for attempt in range(BIND_ATTEMPTS):
            # TCP first: the kernel's port 0 skips ports that TIME_WAIT connections still hold,
            # an explicit bind does not. Thousands of short SMTP and DNS connections (a matrix,
            # a load test) leave thousands of those; UDP keeps no such state, so the UDP twin of
            # a TCP port is nearly always free. (UDP first lost 1 lab in 80 after a load test.)
            try:
                tcp = await asyncio.start_server(self._serve_tcp, host, self.port)
            except OSError as exc:
                raise ServiceError(f"dns: cannot bind TCP {host}:{self.port}: {exc}") from exc
            port = tcp.sockets[0].getsockname()[1]
            try:
                udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self),
                                                             local_addr=(host, port))
            except OSError as exc:
                tcp.close()
                await tcp.wait_closed()
                # Port 0 gave a TCP port whose UDP twin is taken: draw again.
                if self.port or exc.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS - 1:
                    raise ServiceError(f"dns: cannot bind UDP {host}:{port}: {exc}") from exc
                continue
            self._tcp, self._udp, self.port = tcp, udp, port
            return

    async def _stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.transport.abort()  # wakes every handler: its next read ends
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 7766 §6.2.1: several length-prefixed queries may share one connection.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else ""
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                out = self.respond(await reader.readexactly(size), "tcp", client)
                if out is not None:
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the asker hung up, possibly mid-message
        except asyncio.CancelledError:
            # stop() cancels us; ending quietly here because Python 3.11's start_server logs
            # a cancelled handler task as an error.
            pass
        except Exception as exc:  # a bug of ours: keep serving, let check() tell
            self.record_error(exc)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def respond(self, data: bytes, transport: str, client: str = "") -> bytes | None:
        """Bytes to send back for the packet `data` (None: send nothing), recording the query.
        A malformed packet gets FORMERR when its header parses, else it is dropped."""
        seen = DnsQuery(time.time(), transport, "", "", "", client=client)
        try:
            request = dnslib.DNSRecord.parse(data)
        except Exception as exc:  # dnslib raises several kinds on garbage
            return self._malformed(seen, data, exc)
        if request.questions:
            seen = replace(seen, qname=str(request.q.qname), qtype=_type_name(request.q.qtype))
        if request.header.qr:  # answer() never answers answers
            self._queries.append(replace(seen, rcode="DROPPED", note="a response, not a query"))
            return None
        try:
            reply = answer(self.zone, request)
            out = b"" if reply is None else wire(request, reply, transport)
        except (DNSLabelError, DNSError, DnsBufferError) as exc:
            # dnslib parses names it cannot write back (a "label" of 64 to 191 bytes, whose
            # length byte is really a reserved label type): the asker's packet was malformed
            # after all. Found by scripts/fuzz_atheris.py.
            return self._malformed(seen, data, exc)
        except Exception as exc:  # a bug of ours: stay silent, let check() tell
            self.record_error(exc)
            return None
        if reply is None:
            self._queries.append(replace(seen, rcode="TIMEOUT"))
            return None
        truncated = transport == "udp" and bool(out[2] & 0x02)  # the TC bit of the header
        self._queries.append(replace(seen, rcode=str(dnslib.RCODE.get(reply.header.rcode)),
                                     answers=tuple(_text(rr) for rr in reply.rr),
                                     note="truncated (TC): too big for UDP" if truncated else ""))
        return out

    def _malformed(self, seen: DnsQuery, data: bytes, exc: Exception) -> bytes | None:
        seen = replace(seen, note=f"malformed packet ({len(data)} bytes): {exc}")
        try:
            header = dnslib.DNSHeader.parse(dnslib.Buffer(data[:12])) if len(data) >= 12 else None
        except Exception:
            header = None
        if header is None or header.qr:
            self._queries.append(replace(seen, rcode="DROPPED"))
            return None
        self._queries.append(replace(seen, rcode="FORMERR"))
        formerr = dnslib.RCODE.FORMERR
        reply = dnslib.DNSHeader(id=header.id, qr=1, opcode=header.opcode, rcode=formerr)
        return bytes(dnslib.DNSRecord(reply).pack())
