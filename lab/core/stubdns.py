"""What a stub resolver makes of the lab DNS's packets, pure: the built-in senders' DNS client
(lab/senders/builtin/dnsclient.py) moves the bytes; this module writes the question, decides
which packet is the reply to it and reads the reply. Packets are dnslib's, as the lab's DNS
server's are.

The reading is the one a resolver gives its caller (RFC 1034 §5.3.3, RFC 2308), and dnspython's
`Resolver.resolve` for one server with no cache:
- the answer section's CNAME chain is followed from the question's name (RFC 1034 §3.6.2), at
  most `MAX_CHAIN` hops, and the records of the asked type at its end are the answer;
- none there: NXDOMAIN when the reply says so (RFC 2308 §2.1, the chain included), otherwise
  "no records" (NOERROR, no data, RFC 2308 §2.2);
- any other rcode (SERVFAIL, REFUSED, FORMERR, NOTIMP, ...): the lookup failed.
A packet that does not parse, is not a response, or carries another id or question is not the
reply (RFC 5452 §4.1): the client keeps waiting for it.
"""

from __future__ import annotations

from functools import cached_property

import dnslib
from dnslib.buffer import BufferError as DnsBufferError
from dnslib.dns import DNSError
from dnslib.label import DNSLabelError
from msgspec import Struct

from .names import name_key

MAX_CHAIN = 16  # CNAME hops followed in one answer (dnspython's limit)
MAX_NAME = 255  # RFC 1035 §2.3.4: octets of a name on the wire
QTYPES = {"A": dnslib.QTYPE.A, "MX": dnslib.QTYPE.MX, "TXT": dnslib.QTYPE.TXT}
CLASS_IN = 1


class BadName(ValueError):
    """A name no question can carry (an empty or over-long label, too long in all)."""


class Reading(Struct, frozen=True):
    """What a reply says about the question. `kind`: records | no-records | nxdomain | failed;
    `records` are the rdata of the asked type at the chain's end (for `records` only)."""

    kind: str
    records: tuple[object, ...] = ()
    why: str = ""


def labels(name: str) -> tuple[bytes, ...]:
    """The wire labels of `name` (absolute; a trailing dot is allowed, "" and "." are the root).
    Non-ASCII labels go through IDNA (RFC 3490). Raises BadName."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return ()
    try:
        # the codec refuses an empty label or one over 63 octets, but lets one trailing dot by
        parts = tuple(text.encode("idna").split(b"."))
    except UnicodeError as exc:
        raise BadName(f"{name!r}: {exc}") from None
    if b"" in parts:  # "a.test..": the second trailing dot
        raise BadName(f"{name!r}: an empty label")
    if sum(len(p) + 1 for p in parts) + 1 > MAX_NAME:
        raise BadName(f"{name!r}: over {MAX_NAME} octets")
    return parts


# (labels, type) -> the question's packet under ID 0: packed by dnslib once, then given each
# asker's ID (the ID is the packet's first two bytes, RFC 1035 §4.1.1)
_PACKED: dict[tuple[tuple[bytes, ...], str], bytes] = {}
PACKED_MAX = 4096


class Question(Struct, frozen=True, dict=True):
    """One question to ask: `qid` is the packet's id, `name` the wire labels."""

    qid: int
    name: tuple[bytes, ...]
    rdtype: str

    @cached_property
    def packet(self) -> bytes:
        """The query: one question, recursion desired, no EDNS (as dnspython's resolver asks
        by default: an answer over 512 octets comes truncated and is asked again over TCP).
        Made once, for every try over UDP and the one over TCP."""
        key = (self.name, self.rdtype)
        packed = _PACKED.get(key)
        if packed is None:
            q = dnslib.DNSRecord(dnslib.DNSHeader(id=0, rd=1),
                                 q=dnslib.DNSQuestion(dnslib.DNSLabel(self.name),
                                                      QTYPES[self.rdtype]))
            packed = bytes(q.pack())
            if len(_PACKED) < PACKED_MAX:
                _PACKED[key] = packed
        return self.qid.to_bytes(2, "big") + packed[2:]

    def reply(self, data: bytes) -> dnslib.DNSRecord | None:
        """`data` parsed if it is the reply to this question (the same id, a response, the
        same question); None for anything else, so the client waits on."""
        try:
            reply = dnslib.DNSRecord.parse(data)
        except (DNSError, DNSLabelError, DnsBufferError, ValueError, IndexError, KeyError):
            return None  # dnslib raises several kinds on garbage
        if reply.header.id != self.qid or not reply.header.qr or len(reply.questions) != 1:
            return None
        q = reply.q
        if (q.qtype != QTYPES[self.rdtype] or q.qclass != CLASS_IN
                or _key(q.qname) != self._lower):
            return None
        return reply

    @staticmethod
    def truncated(reply: dnslib.DNSRecord) -> bool:
        return truncated(reply)

    @cached_property
    def _lower(self) -> tuple[bytes, ...]:
        return tuple(p.lower() for p in self.name)


def _key(label: dnslib.DNSLabel) -> tuple[bytes, ...]:
    return tuple(part.lower() for part in label.label)


def truncated(reply: dnslib.DNSRecord) -> bool:
    return bool(reply.header.tc)


def read(reply: dnslib.DNSRecord) -> Reading:
    """What `reply` (already matched by `Question.reply`) answers to its own question."""
    rcode = reply.header.rcode
    if rcode not in (dnslib.RCODE.NOERROR, dnslib.RCODE.NXDOMAIN):
        return Reading("failed", why=f"the server answered {dnslib.RCODE.get(rcode)}")
    qtype = reply.q.qtype
    name = _key(reply.q.qname)
    for _ in range(MAX_CHAIN + 1):
        here = [rr for rr in reply.rr if rr.rclass == CLASS_IN and _key(rr.rname) == name]
        found = tuple(rr.rdata for rr in here if rr.rtype == qtype)
        if found:
            return Reading("records", found)
        cname = next((rr for rr in here if rr.rtype == dnslib.QTYPE.CNAME), None)
        if cname is None:
            break
        name = _key(cname.rdata.label)
    else:
        return Reading("failed", why=f"a CNAME chain over {MAX_CHAIN} hops")
    if rcode == dnslib.RCODE.NXDOMAIN:
        return Reading("nxdomain", why="no such name (NXDOMAIN)")
    return Reading("no-records", why="no records of this type")


def text(label: dnslib.DNSLabel) -> str:
    """A name from a record, lower-case with no trailing dot ("" for the root, a null MX)."""
    return name_key(str(label))
