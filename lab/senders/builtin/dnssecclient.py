"""The validating DNS client of the reference sender (DESIGN §9): queries with DO set to the
lab's DNS, answers fed to the pure validator (lab/core/dnsval.py) until it decides.

Responses are remembered for one delivery (`reset()` between messages), so the DS and DNSKEY
lookups of the chain are asked once per message, and every step sees the zone as it is now.
"""

from __future__ import annotations

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rdatatype

from ...core.dnsval import Lookup, Query, lookup, parse_anchor
from ...errors import LabError
from ..env import LabEnv

TIMEOUT_S = 2.0
EDNS_PAYLOAD = 1232


class ValidatingResolver:
    """Validated lookups against the lab DNS, trusting `env.trust_anchor` only."""

    def __init__(self, env: LabEnv, *, timeout: float = TIMEOUT_S) -> None:
        if env.trust_anchor is None:
            raise LabError("the lab has no DNSSEC trust anchor")
        self._anchor = parse_anchor(env.trust_anchor)
        self._where = (env.dns_host, env.dns_port)
        self._timeout = timeout
        self._cache: dict[Query, dns.message.Message | None] = {}
        self.queries = 0

    def reset(self) -> None:
        self._cache.clear()

    async def _ask(self, query: Query) -> dns.message.Message | None:
        if query in self._cache:
            return self._cache[query]
        name, rdtype = query
        q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), want_dnssec=True,
                                   payload=EDNS_PAYLOAD)
        self.queries += 1
        try:
            resp, _ = await dns.asyncquery.udp_with_fallback(
                q, self._where[0], port=self._where[1], timeout=self._timeout)
        except (dns.exception.DNSException, OSError):
            resp = None
        self._cache[query] = resp
        return resp

    async def lookup(self, name: str, rdtype: str, now: float) -> Lookup:
        """`rdtype` at `name`, validated (see lab/core/dnsval.py for the security words)."""
        qname = dns.name.from_text(name.rstrip(".") + ".")
        steps = lookup(self._anchor, qname, dns.rdatatype.from_text(rdtype), now)
        try:
            query = next(steps)
            while True:
                query = steps.send(await self._ask(query))
        except StopIteration as done:
            result: Lookup = done.value
            return result
