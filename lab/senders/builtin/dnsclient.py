"""A small DNS client for the built-in senders: dnspython's async resolver asking the lab's DNS
server only (never the system resolver), with no cache, so every step sees the current zone.

Errors come in three kinds, so a sender can tell "there is no such record" from "the lookup
failed" (RFC 8461 §3.1 and D-09 treat them differently from a sender's point of view):
- `NoRecords`: the name exists but has no record of that type (NOERROR, no data);
- `NxDomain` (a `NoRecords`): the name does not exist;
- `LookupFailed`: SERVFAIL, REFUSED, a timeout or an unusable answer.
CNAME chains are followed by dnspython.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

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


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


class DnsClient:
    """Lookups against the lab's DNS server at `env.dns_host:env.dns_port`."""

    def __init__(self, env: LabEnv, *, timeout: float = TIMEOUT_S,
                 lifetime: float = LIFETIME_S) -> None:
        # configure=False: no /etc/resolv.conf, no search list, no system nameservers.
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(env.dns_host, env.dns_port)]
        resolver.cache = None  # every step must see the zone as it is now
        resolver.timeout = timeout
        resolver.lifetime = lifetime
        self._resolver = resolver

    async def _resolve(self, name: str, rdtype: str, lifetime: float | None) -> dns.resolver.Answer:
        try:
            return await self._resolver.resolve(name, rdtype, search=False, lifetime=lifetime)
        except dns.resolver.NXDOMAIN:
            raise NxDomain(name, rdtype, "no such name (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            raise NoRecords(name, rdtype, "no records of this type") from None
        except dns.resolver.LifetimeTimeout as exc:
            raise LookupFailed(name, rdtype, f"timed out: {exc}", timeout=True) from None
        except dns.resolver.NoNameservers as exc:
            # SERVFAIL or REFUSED from the only server there is.
            raise LookupFailed(name, rdtype, f"server failure: {exc}") from None
        except dns.exception.DNSException as exc:
            raise LookupFailed(name, rdtype, f"lookup failed: {exc!r}") from None

    async def resolve_mx(self, domain: str, *, lifetime: float | None = None) -> list[str]:
        """MX host names of `domain`, most preferred first (ties by name, so runs repeat);
        lower-case, no trailing dot. A null MX (RFC 7505: `0 .`) gives `[]`: the domain
        accepts no mail. Raises `NoRecords` when there is no MX (RFC 5321 §5.1: the caller
        then falls back to the domain's address)."""
        answer = await self._resolve(domain, "MX", lifetime)
        pairs = sorted((int(r.preference), _norm(r.exchange.to_text())) for r in answer)
        return [host for _, host in pairs if host]

    async def resolve_txt(self, name: str, *, lifetime: float | None = None) -> list[str]:
        """TXT records at `name` (after CNAMEs), each record's strings joined with no spaces
        (RFC 8461 §3.1, D-07). Bytes are decoded as ASCII with undecodable bytes replaced by
        U+FFFD rather than the record skipped: the record still counts (two `v=STSv1`
        records stay two, D-02) and its parser rejects the replacement character."""
        answer = await self._resolve(name, "TXT", lifetime)
        return [b"".join(r.strings).decode("ascii", "replace") for r in answer]

    async def resolve_a(self, name: str, *, lifetime: float | None = None) -> list[str]:
        """IPv4 addresses of `name`."""
        answer = await self._resolve(name, "A", lifetime)
        return [r.address for r in answer]

    async def mail_hosts(self, domain: str, *, lifetime: float | None = None) -> list[str]:
        """Where mail for `domain` goes: its MX hosts in order, or (RFC 5321 §5.1) with no MX
        the domain itself if it has an address. `[]` for a null MX."""
        try:
            return await self.resolve_mx(domain, lifetime=lifetime)
        except NoRecords:
            await self.resolve_a(domain, lifetime=lifetime)
            return [_norm(domain)]
