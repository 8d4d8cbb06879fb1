"""The built-in senders' reading of DNS replies (lab/core/stubdns.py), pure: one line per case,
a failure beside every success. The client that moves the packets is tested against the lab's
real DNS server in tests/test_opportunistic.py."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from downgrade_lab.core import stubdns

NAME = "_mta-sts.example.test"


def reply(*zone_lines: str, rcode: int = RCODE.NOERROR, qname: str = NAME, qtype: str = "TXT",
          qid: int = 7, qr: int = 1) -> DNSRecord:
    r = DNSRecord(DNSHeader(id=qid, qr=qr, rcode=rcode),
                  q=DNSQuestion(qname, getattr(QTYPE, qtype)))
    for line in zone_lines:
        for rr in RR.fromZone(line):
            r.add_answer(rr)
    return r


def wire(r: DNSRecord) -> bytes:
    return bytes(r.pack())


TXT = f'{NAME}. 0 IN TXT "v=STSv1; id=1"'


@pytest.mark.parametrize(("name", "want"), [
    ("example.test", (b"example", b"test")),
    ("example.test.", (b"example", b"test")),  # absolute, as every name asked is
    ("", ()),
    (".", ()),
    ("bücher.example", (b"xn--bcher-kva", b"example")),  # IDNA (RFC 3490)
    ("a" * 63 + ".test", (b"a" * 63, b"test")),
])
def test_labels_of_a_name(name: str, want: tuple[bytes, ...]) -> None:
    assert stubdns.labels(name) == want


@pytest.mark.parametrize("name", [
    "a..test",  # an empty label
    "a.test..",  # one trailing dot is the root; a second is an empty label
    ".test",
    "a" * 64 + ".test",  # a label over 63 octets
    ".".join(["a" * 63] * 4),  # 256 octets on the wire
])
def test_a_name_no_question_can_carry_is_refused(name: str) -> None:
    with pytest.raises(stubdns.BadName):
        stubdns.labels(name)


def test_the_question_asks_once_with_recursion_and_no_edns() -> None:
    packet = DNSRecord.parse(stubdns.Question(513, stubdns.labels(NAME), "TXT").packet)
    assert (packet.header.id, packet.header.qr, packet.header.rd) == (513, 0, 1)
    assert [(str(q.qname), q.qtype) for q in packet.questions] == [(f"{NAME}.", QTYPE.TXT)]
    assert packet.ar == [] and packet.rr == []


@pytest.mark.parametrize(("qid", "name", "rdtype"), [
    (513, NAME, "TXT"), (0, NAME, "TXT"), (65535, NAME, "TXT"), (513, NAME, "MX"),
    (513, "mx1.example.test", "A"), (513, "MX1.Example.TEST", "A")])
def test_a_question_asked_again_is_packed_as_dnslib_packs_it(qid: int, name: str,
                                                            rdtype: str) -> None:
    first = stubdns.Question(1, stubdns.labels(NAME), "TXT").packet  # one packed before it
    packet = stubdns.Question(qid, stubdns.labels(name), rdtype).packet
    made = DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(DNSLabel(stubdns.labels(name)),
                                                          getattr(QTYPE, rdtype)))
    assert packet == bytes(made.pack())
    assert (packet == first) is ((qid, name, rdtype) == (1, NAME, "TXT"))


ASK = stubdns.Question(7, stubdns.labels(NAME), "TXT")


@pytest.mark.parametrize(("data", "ours"), [
    (wire(reply(TXT)), True),
    (wire(reply(TXT, qname=NAME.upper())), True),  # names compare without case
    (wire(reply(TXT, qid=8)), False),  # another id
    (wire(reply(TXT, qr=0)), False),  # a query, not a response
    (wire(reply(TXT, qtype="A")), False),  # another question
    (wire(reply(TXT, qname="other.example.test")), False),
    (wire(DNSRecord(DNSHeader(id=7, qr=1))), False),  # no question at all
    (b"\x00\x07garbage", False),
    (b"", False),
])
def test_only_the_reply_to_the_question_is_taken(data: bytes, ours: bool) -> None:
    assert (ASK.reply(data) is not None) is ours


def read(r: DNSRecord) -> tuple[str, list[str]]:
    reading = stubdns.read(DNSRecord.parse(wire(r)))
    return reading.kind, [str(x) for x in reading.records]


@pytest.mark.parametrize(("r", "kind", "records"), [
    (reply(TXT), "records", ['"v=STSv1; id=1"']),
    # D-08: the chain is followed from the question's name to the asked type
    (reply(f"{NAME}. 0 IN CNAME sts.other.test.", 'sts.other.test. 0 IN TXT "v=STSv1; id=2"'),
     "records", ['"v=STSv1; id=2"']),
    (reply(f"{NAME.upper()}. 0 IN CNAME Sts.Other.Test.",
           'sts.other.test. 0 IN TXT "v=STSv1; id=2"'), "records", ['"v=STSv1; id=2"']),
    # records of the type at another name are no answer to this question
    (reply('elsewhere.test. 0 IN TXT "v=STSv1; id=3"'), "no-records", []),
    (reply(f"{NAME}. 0 IN A 127.0.0.1"), "no-records", []),  # another type at the name
    (reply(), "no-records", []),  # NOERROR, no data (RFC 2308 §2.2)
    (reply(f"{NAME}. 0 IN CNAME gone.other.test."), "no-records", []),  # chain to no data
    (reply(rcode=RCODE.NXDOMAIN), "nxdomain", []),
    (reply(f"{NAME}. 0 IN CNAME gone.other.test.", rcode=RCODE.NXDOMAIN), "nxdomain", []),
    (reply(TXT, rcode=RCODE.NXDOMAIN), "records", ['"v=STSv1; id=1"']),  # the data wins
    (reply(rcode=RCODE.SERVFAIL), "failed", []),
    (reply(TXT, rcode=RCODE.SERVFAIL), "failed", []),  # whatever it carries
    (reply(rcode=RCODE.REFUSED), "failed", []),
    (reply(rcode=RCODE.FORMERR), "failed", []),
    (reply(rcode=RCODE.NOTIMP), "failed", []),
])
def test_what_a_reply_answers(r: DNSRecord, kind: str, records: list[str]) -> None:
    assert read(r) == (kind, records)


def test_a_cname_loop_is_a_failure_not_a_hang() -> None:
    loop = reply(f"{NAME}. 0 IN CNAME a.other.test.", "a.other.test. 0 IN CNAME "
                 f"{NAME}.")
    assert read(loop)[0] == "failed"
    chain = [f"h{i}.test. 0 IN CNAME h{i + 1}.test." for i in range(stubdns.MAX_CHAIN)]
    long = reply(f"{NAME}. 0 IN CNAME h0.test.", *chain, f'h{stubdns.MAX_CHAIN}.test. 0 IN TXT "x"')
    assert read(long)[0] == "failed"  # one hop over the limit
    short = reply(f"{NAME}. 0 IN CNAME h1.test.", *chain[1:], f'h{stubdns.MAX_CHAIN}.test. 0 IN TXT "x"')
    assert read(short) == ("records", ['"x"'])  # exactly at the limit


@pytest.mark.parametrize(("label", "want"), [
    (DNSLabel("MX1.Example.Test."), "mx1.example.test"),
    (DNSLabel("."), ""),  # a null MX (RFC 7505)
])
def test_names_from_records(label: DNSLabel, want: str) -> None:
    assert stubdns.text(label) == want


def test_a_truncated_reply_is_seen() -> None:
    cut = DNSRecord(DNSHeader(id=7, qr=1, tc=1), q=DNSQuestion(NAME, QTYPE.TXT))
    assert stubdns.truncated(cut) and not stubdns.truncated(reply(TXT))
