"""The validating DNS client of the reference sender (DESIGN §9): queries with DO set to the
lab's DNS, answers fed to the pure validator (lab/core/dnsval.py) until it decides.

Responses are remembered for one delivery (`reset()` between messages), so the DS and DNSKEY
lookups of the chain are asked once per message, and every step sees the zone as it is now.
The packets go as the built-in senders' other lookups do (`DnsClient.exchange`: UDP, TCP when
the reply comes truncated); a reply's bytes are parsed once (`_parse`).
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype

from ...core.dnsval import Lookup, Query, lookup, parse_anchor
from ...errors import LabError
from ..env import LabEnv
from .dnsclient import DnsClient, LookupFailed

TIMEOUT_S = 2.0
EDNS_PAYLOAD = 1232
PARSED_MAX = 4096  # replies kept parsed (a matrix's DANE lookups have about 90 distinct)

# A reply's bytes past its ID -> the reply as dnspython reads it. The lab DNS answers the same
# question to the same zone with the same bytes, and a validating lookup asks the chain's DS and
# DNSKEY again for every message: nine replies in ten were parsed before. Shared: read-only.
_PARSED: dict[bytes, dns.message.Message | None] = {}


def _parse(data: bytes) -> dns.message.Message | None:
    key = data[2:]
    if key in _PARSED:
        return _PARSED[key]
    try:
        msg: dns.message.Message | None = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        msg = None  # garbage is no reply: the exchange waits on
    if len(_PARSED) < PARSED_MAX:
        _PARSED[key] = msg
    return msg


class _Signed:
    """One question with DO set, for `DnsClient.exchange`; its reply read by dnspython."""

    def __init__(self, query: Query) -> None:
        name, rdtype = query
        kind = dns.rdatatype.RdataType.make(rdtype)
        self.query = dns.message.make_query(name, kind, want_dnssec=True, payload=EDNS_PAYLOAD)
        self.packet = self.query.to_wire()
        self.rdtype = dns.rdatatype.to_text(kind)

    def reply(self, data: bytes) -> dns.message.Message | None:
        """The reply if `data` answers this question (its ID, a response, the same opcode and
        question), else None (what dnspython's `Message.is_response` asks)."""
        if data[:2] != self.packet[:2]:
            return None
        msg = _parse(data)
        if (msg is None or not msg.flags & dns.flags.QR or msg.opcode() != self.query.opcode()
                or msg.question != self.query.question):
            return None
        return msg

    @staticmethod
    def truncated(reply: dns.message.Message) -> bool:
        return bool(reply.flags & dns.flags.TC)


class ValidatingResolver:
    """Validated lookups against the lab DNS, trusting `env.trust_anchor` only."""

    def __init__(self, env: LabEnv, *, timeout: float = TIMEOUT_S) -> None:
        if env.trust_anchor is None:
            raise LabError("the lab has no DNSSEC trust anchor")
        self._anchor = parse_anchor(env.trust_anchor)
        self._dns = DnsClient(env, timeout=timeout, lifetime=timeout)  # one try, then TCP
        self._cache: dict[Query, dns.message.Message | None] = {}
        self.queries = 0

    def reset(self) -> None:
        self._cache.clear()

    async def _ask(self, query: Query) -> dns.message.Message | None:
        if query in self._cache:
            return self._cache[query]
        ask = _Signed(query)
        self.queries += 1
        resp: dns.message.Message | None
        try:
            resp = await self._dns.exchange(ask.query.question[0].name.to_text(), ask)
        except LookupFailed:
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
