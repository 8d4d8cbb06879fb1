"""What the lab's DNS does with one packet (DESIGN §2, §3), pure: lab/services/dns.py moves the
bytes and timestamps the record.

One rule decides which packets get no answer at all: a response (QR set) is never answered,
so the lab neither loops nor reflects, and neither is a packet too broken to have a header.
A malformed query whose header parses gets FORMERR (RFC 1035 §4.1.1), whatever broke later.
"""

from __future__ import annotations

import dnslib
from dnslib.buffer import BufferError as DnsBufferError
from dnslib.dns import DNSError
from dnslib.label import DNSLabelError
from msgspec import Struct
from msgspec.structs import replace

from .dnszone import Zone, answer, is_query, rr_text, type_name, wire

HEADER_SIZE = 12  # RFC 1035 §4.1.1
DROPPED = "DROPPED"  # the rcode field of a packet not worth an answer
TIMEOUT = "TIMEOUT"  # the rcode field when a `timeout` fault kept the lab silent
FORMERR = "FORMERR"
ANSWERED_MAX = 4096  # distinct packets `Answers` keeps (a flood keeps none more)
ZONES_MAX = 256  # zones whose `Answers` a process keeps for its next lab (`answers_for`)


class Served(Struct, frozen=True):
    """What became of one packet: the bytes to send back (None: nothing) and what the query
    log records of it."""

    out: bytes | None
    rcode: str  # the rcode sent, TIMEOUT or DROPPED
    qname: str = ""
    qtype: str = ""
    answers: tuple[str, ...] = ()  # the answer section, one zone-file line per record
    note: str = ""  # what was odd: a malformed packet, a response, an answer truncated for UDP
    # the authority section (SOA, NSEC proofs and their RRSIGs), for signed zones only: the
    # DNSSEC evidence of a denial (issue 16); () for every other zone, so their records keep
    # their shape
    authority: tuple[str, ...] = ()


def serve(zone: Zone, data: bytes, transport: str) -> Served:
    """Answer the packet `data` that arrived over `transport` (udp | tcp) from `zone`.
    Exceptions other than dnslib's own parse and encode errors are bugs of the lab's."""
    try:
        request = dnslib.DNSRecord.parse(data)
    except Exception as exc:  # dnslib raises several kinds on garbage
        return _malformed(data, exc, "", "")
    qname = str(request.q.qname) if request.questions else ""
    qtype = type_name(request.q.qtype) if request.questions else ""
    if not is_query(request.header):
        return Served(None, DROPPED, qname, qtype, note="a response, not a query")
    try:
        reply = answer(zone, request)
        out = None if reply is None else wire(request, reply, transport)
    except (DNSLabelError, DNSError, DnsBufferError) as exc:
        # dnslib parses names it cannot write back (a "label" of 64 to 191 bytes, whose
        # length byte is really a reserved label type): the asker's packet was malformed
        # after all. Found by scripts/fuzz_atheris.py.
        return _malformed(data, exc, qname, qtype)
    if reply is None or out is None:
        return Served(None, TIMEOUT, qname, qtype)
    truncated = transport == "udp" and bool(out[2] & 0x02)  # the TC bit of the header
    return Served(out, str(dnslib.RCODE.get(reply.header.rcode)), qname, qtype,
                  answers=tuple(rr_text(rr) for rr in reply.rr),
                  note="truncated (TC): too big for UDP" if truncated else "",
                  authority=tuple(rr_text(rr) for rr in reply.auth)
                  if zone.signed is not None else ())


class Answers:
    """`serve()` for one zone, remembering what it made of each packet: the same question to
    the same zone (the same bytes past the ID, over the same transport) has the same answer,
    sent under the asker's ID. About 40 % of a matrix's queries repeat one (the steps, the
    report's own MX lookups). A new zone needs new `Answers`."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self._served: dict[tuple[str, bytes], Served] = {}

    def serve(self, data: bytes, transport: str) -> Served:
        if len(data) < HEADER_SIZE:  # no ID to put back: nothing worth keeping
            return serve(self.zone, data, transport)
        key = (transport, data[2:])
        served = self._served.get(key)
        if served is None:
            served = serve(self.zone, data, transport)
            if len(self._served) < ANSWERED_MAX:
                self._served[key] = served
        if served.out is None:
            return served
        return replace(served, out=data[:2] + served.out[2:])  # this asker's ID


# (zone, the identity of its signed data) -> its Answers, for every lab of the process
_SHARED: dict[tuple[Zone, int], Answers] = {}


def answers_for(zone: Zone) -> Answers:
    """The `Answers` of `zone`, shared by the process's servers answering from an equal zone:
    the pairs of a run build the same zones again (a scenario's two senders, the catalogue's
    common worlds), and 40 % of the queries of one lab only repeat one of its own. A signed
    zone shares only with itself, the same object: its signatures are not in its equality.
    At most `ZONES_MAX` zones are kept; past them the process starts again."""
    key = (zone, id(zone.signed))  # the zone held in its Answers: no id is reused meanwhile
    answers = _SHARED.get(key)
    if answers is None:
        if len(_SHARED) >= ZONES_MAX:
            _SHARED.clear()
        answers = _SHARED[key] = Answers(zone)
    return answers


def _malformed(data: bytes, exc: Exception, qname: str, qtype: str) -> Served:
    note = f"malformed packet ({len(data)} bytes): {exc}"
    try:
        header = (dnslib.DNSHeader.parse(dnslib.Buffer(data[:HEADER_SIZE]))
                  if len(data) >= HEADER_SIZE else None)
    except Exception:  # a header too broken to parse is no header
        header = None
    if header is None or not is_query(header):
        return Served(None, DROPPED, qname, qtype, note=note)
    reply = dnslib.DNSHeader(id=header.id, qr=1, opcode=header.opcode, rcode=dnslib.RCODE.FORMERR)
    return Served(bytes(dnslib.DNSRecord(reply).pack()), FORMERR, qname, qtype, note=note)
