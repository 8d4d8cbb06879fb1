"""A small DNS client for the built-in senders: one question at a time to the lab's DNS server
only (never the system resolver), with no cache, so every step sees the current zone. It asks
over UDP, again over TCP when the answer comes truncated (RFC 7766 §5), and retries a silent
server until the lookup's lifetime is spent. The packets are dnslib's, as the lab DNS server's;
what a reply means is `lab.core.stubdns` (a resolver's reading: CNAME chains followed, NXDOMAIN
and "no data" told apart, every other rcode a failure). dnspython's full resolver is kept for
the DNSSEC-validating client of signed labs (dnssecclient.py), where it is imported: here it
cost about 45 ms of `-X importtime` at a run's start, and parsing an answer took 108 us against
dnslib's 40 us (docs/performance.md, sixth pass).

Errors come in three kinds, so a sender can tell "there is no such record" from "the lookup
failed" (RFC 8461 §3.1 and D-09 treat them differently from a sender's point of view):
- `NoRecords`: the name exists but has no record of that type (NOERROR, no data);
- `NxDomain` (a `NoRecords`): the name does not exist;
- `LookupFailed`: SERVFAIL, REFUSED, a timeout or an unusable answer.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from typing import Any, Protocol

from ...core import stubdns
from ...core.names import name_key
from ...errors import LabError
from ..env import LabEnv

TIMEOUT_S = 2.0  # per try: the lab's DNS is on loopback and answers at once or never
LIFETIME_S = 3.0  # whole lookup, retries included


class DnsError(LabError):
    """A lookup of `rdtype` at `name` did not give records."""

    reason = "error"

    def __init__(self, name: str, rdtype: str, message: str) -> None:
        self.name = name
        self.rdtype = rdtype
        super().__init__(f"{rdtype} {name}: {message}")


class NoRecords(DnsError):
    """The name exists but holds no record of the type asked for (NOERROR, no data)."""

    reason = "no-records"


class NxDomain(NoRecords):
    """The name does not exist (NXDOMAIN): also "no records"."""

    reason = "nxdomain"


class LookupFailed(DnsError):
    """The lookup failed (SERVFAIL, REFUSED, timeout): nothing is known about the name."""

    reason = "failed"

    def __init__(self, name: str, rdtype: str, message: str, *, timeout: bool = False) -> None:
        self.timeout = timeout
        super().__init__(name, rdtype, message)


class Asking(Protocol):
    """A question as the exchange needs it: its packet, what it asks for (for messages), and
    how its reply is read (`stubdns.Question`; the validating client's, dnssecclient.py)."""

    @property
    def packet(self) -> bytes: ...

    @property
    def rdtype(self) -> str: ...

    def reply(self, data: bytes) -> Any:
        """`data` read if it is the reply to this question, else None (waited past)."""

    def truncated(self, reply: Any) -> bool: ...


class _Reply(asyncio.DatagramProtocol):
    """Waits on one UDP socket for the reply to `ask`; anything else that arrives is dropped."""

    def __init__(self, ask: Asking) -> None:
        self.ask = ask
        self.got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.ask.reply(data)
        if reply is not None and not self.got.done():
            self.got.set_result(reply)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        if not self.got.done():
            self.got.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.got.done():
            self.got.set_exception(exc or ConnectionError("socket closed"))


class DnsClient:
    """Lookups against the lab's DNS server at `env.dns_host:env.dns_port`."""

    def __init__(self, env: LabEnv, *, timeout: float = TIMEOUT_S,
                 lifetime: float = LIFETIME_S) -> None:
        self._server = (env.dns_host, env.dns_port)
        self._timeout = timeout
        self._lifetime = lifetime

    async def _resolve(self, name: str, rdtype: str, lifetime: float | None) -> tuple[Any, ...]:
        """The records of `rdtype` at `name` (after CNAMEs), as dnslib rdata."""
        try:
            ask = stubdns.Question(secrets.randbelow(1 << 16), stubdns.labels(name), rdtype)
        except stubdns.BadName as exc:
            raise LookupFailed(name, rdtype, f"lookup failed: {exc}") from None
        reply = await self.exchange(name, ask, lifetime=lifetime)
        reading = stubdns.read(reply)
        if reading.kind == "records":
            return reading.records
        if reading.kind == "nxdomain":
            raise NxDomain(name, rdtype, reading.why)
        if reading.kind == "no-records":
            raise NoRecords(name, rdtype, reading.why)
        raise LookupFailed(name, rdtype, f"server failure: {reading.why}")

    async def exchange(self, name: str, ask: Asking, *, lifetime: float | None = None) -> Any:
        """The reply to `ask` (about `name`), as `ask` reads it: over UDP, tried again while
        the lifetime lasts, then over TCP if it came truncated. Raises `LookupFailed`."""
        deadline = time.monotonic() + (self._lifetime if lifetime is None else lifetime)
        tries = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LookupFailed(name, ask.rdtype, f"timed out: no answer in {tries} "
                                   f"{'try' if tries == 1 else 'tries'}", timeout=True)
            tries += 1
            try:
                reply = await self._udp(ask, wait_s=min(self._timeout, left))
            except TimeoutError:
                continue
            except OSError as exc:
                raise LookupFailed(name, ask.rdtype, f"lookup failed: {exc!r}") from None
            if not ask.truncated(reply):
                return reply
            try:
                return await asyncio.wait_for(self._tcp(ask), deadline - time.monotonic())
            except TimeoutError:
                raise LookupFailed(name, ask.rdtype, "timed out over TCP",
                                   timeout=True) from None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                raise LookupFailed(name, ask.rdtype, f"lookup failed over TCP: {exc!r}") from None

    async def _udp(self, ask: Asking, *, wait_s: float) -> Any:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _Reply(ask), remote_addr=self._server)
        try:
            transport.sendto(ask.packet)
            return await asyncio.wait_for(proto.got, wait_s)
        finally:
            transport.close()

    async def _tcp(self, ask: Asking) -> Any:
        reader, writer = await asyncio.open_connection(*self._server)
        try:
            packet = ask.packet
            writer.write(struct.pack("!H", len(packet)) + packet)
            while True:  # RFC 7766 §7: replies carry their id; others are not ours
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = ask.reply(await reader.readexactly(size))
                if reply is not None:
                    return reply
        finally:
            writer.close()

    async def resolve_mx(self, domain: str, *, lifetime: float | None = None) -> list[str]:
        """MX host names of `domain`, most preferred first (ties by name, so runs repeat);
        lower-case, no trailing dot. A null MX (RFC 7505: `0 .`) gives `[]`: the domain
        accepts no mail. Raises `NoRecords` when there is no MX (RFC 5321 §5.1: the caller
        then falls back to the domain's address)."""
        answer = await self._resolve(domain, "MX", lifetime)
        pairs = sorted((int(r.preference), stubdns.text(r.label)) for r in answer)
        return [host for _, host in pairs if host]

    async def resolve_txt(self, name: str, *, lifetime: float | None = None) -> list[str]:
        """TXT records at `name` (after CNAMEs), each record's strings joined with no spaces
        (RFC 8461 §3.1, D-07). Bytes are decoded as ASCII with undecodable bytes replaced by
        U+FFFD rather than the record skipped: the record still counts (two `v=STSv1`
        records stay two, D-02) and its parser rejects the replacement character."""
        answer = await self._resolve(name, "TXT", lifetime)
        return [b"".join(r.data).decode("ascii", "replace") for r in answer]

    async def resolve_a(self, name: str, *, lifetime: float | None = None) -> list[str]:
        """IPv4 addresses of `name`."""
        answer = await self._resolve(name, "A", lifetime)
        return [str(r) for r in answer]

    async def mail_hosts(self, domain: str, *, lifetime: float | None = None) -> list[str]:
        """Where mail for `domain` goes: its MX hosts in order, or (RFC 5321 §5.1) with no MX
        the domain itself if it has an address. `[]` for a null MX."""
        try:
            return await self.resolve_mx(domain, lifetime=lifetime)
        except NoRecords:
            await self.resolve_a(domain, lifetime=lifetime)
            return [name_key(domain)]
