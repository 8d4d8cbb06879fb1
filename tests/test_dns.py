"""The lab's DNS: the pure zone and answers (one line per case), then the server over real
UDP and TCP sockets on port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.resolver
import pytest
from dnslib import CLASS, QTYPE, RCODE, DNSQuestion, DNSRecord

from downgrade_lab.core.model import Attack, DnsSpec, MessageSpec, PolicySpec, ReceiverSpec, World
from downgrade_lab.errors import LabError, ServiceError
from downgrade_lab.services.dns import ATTACKER_MX, DnsServer, Zone, answer, build_zone
from tests.purity import imported_roots, loaded_by_importing

MX1, MX2 = "mx1.example.test", "mx2.example.test"
ADDRESSES = {MX1: "127.0.0.1", MX2: "127.0.0.1", "mta-sts.example.test": "127.0.0.1",
             "tlsrpt.example.test": "127.0.0.1", ATTACKER_MX: "127.0.0.2"}
POLICY = PolicySpec(mx=(MX1, MX2))
STS_ID = POLICY.auto_id()


def world(**dns: Any) -> World:
    spec = DnsSpec(**{"mx": (MX1, MX2), **dns})
    return World("example.test", spec, POLICY, ReceiverSpec(), MessageSpec())


def zone(attacks: tuple[Attack, ...] = (), addresses: Mapping[str, str] = ADDRESSES,
         **dns: Any) -> Zone:
    return build_zone(world(**dns), addresses, attacks)


def show(rr: Any) -> str:
    """One record as `owner TYPE rdata`, owner lower-cased without the dot."""
    return f"{str(rr.rname).lower().rstrip('.')} {QTYPE[rr.rtype]} {rr.rdata.toZone()}"


def ask(z: Zone, name: str, qtype: str = "A") -> tuple[str, list[str]] | None:
    reply = answer(z, DNSRecord.question(name, qtype))
    return None if reply is None else (RCODE[reply.header.rcode], [show(rr) for rr in reply.rr])


LONG = "v=STSv1; id=" + "a" * 300
STS = "_mta-sts.example.test"
CHAIN = ((STS, "a.other.test"), ("a.other.test", "b.other.test"))
SPOOF = Attack("spoof-mx")


@pytest.mark.parametrize(("z", "name", "qtype", "expected"), [
    # MX in preference order, A for every known host
    (zone(), "example.test", "MX",
     ("NOERROR", ["example.test MX 10 mx1.example.test.", "example.test MX 20 mx2.example.test."])),
    (zone(mx=(MX2, MX1)), "example.test", "MX",
     ("NOERROR", ["example.test MX 10 mx2.example.test.", "example.test MX 20 mx1.example.test."])),
    (zone(mx=()), "example.test", "MX", ("NOERROR", [])),
    (zone(), MX1, "A", ("NOERROR", ["mx1.example.test A 127.0.0.1"])),
    (zone(), "MX1.Example.TEST.", "A", ("NOERROR", ["mx1.example.test A 127.0.0.1"])),
    (zone(), "mta-sts.example.test", "A", ("NOERROR", ["mta-sts.example.test A 127.0.0.1"])),
    # TXT: the auto record, a split kept as given, a long string cut at 255, several, none
    (zone(), STS, "TXT",
     ("NOERROR", [f'_mta-sts.example.test TXT "v=STSv1; id={STS_ID}"'])),
    (zone(sts_txt=(("v=STSv1; ", "id=1"),)), STS, "TXT",
     ("NOERROR", ['_mta-sts.example.test TXT "v=STSv1; " "id=1"'])),
    (zone(sts_txt=((LONG,),)), STS, "TXT",
     ("NOERROR", [f'_mta-sts.example.test TXT "{LONG[:255]}" "{LONG[255:]}"'])),
    (zone(sts_txt=(("v=STSv1; id=1",), ("v=STSv1; id=2",))), STS, "TXT",
     ("NOERROR", ['_mta-sts.example.test TXT "v=STSv1; id=1"',
                  '_mta-sts.example.test TXT "v=STSv1; id=2"'])),
    (zone(sts_txt=((),)), STS, "TXT", ("NOERROR", ['_mta-sts.example.test TXT ""'])),
    (zone(sts_txt=()), STS, "TXT", ("NXDOMAIN", [])),
    (zone(), "_smtp._tls.example.test", "TXT",
     ("NOERROR", ['_smtp._tls.example.test TXT "v=TLSRPTv1; '
                  'rua=mailto:tlsrpt@example.test,https://tlsrpt.example.test/report"'])),
    # CNAME chain followed, the records living at its end (D-08); a loop is SERVFAIL
    (zone(cname=CHAIN), STS, "TXT",
     ("NOERROR", ["_mta-sts.example.test CNAME a.other.test.", "a.other.test CNAME b.other.test.",
                  f'b.other.test TXT "v=STSv1; id={STS_ID}"'])),
    (zone(cname=CHAIN), STS, "CNAME",
     ("NOERROR", ["_mta-sts.example.test CNAME a.other.test."])),
    (zone(cname=((STS, "gone.other.test"),), sts_txt=()),
     STS, "TXT", ("NXDOMAIN", ["_mta-sts.example.test CNAME gone.other.test."])),
    (zone(cname=(("a.example.test", "b.example.test"), ("b.example.test", "a.example.test"))),
     "a.example.test", "A", ("SERVFAIL", [])),
    # faults per name, winning over the data there
    (zone(fault=((STS, "servfail"),)), STS, "TXT", ("SERVFAIL", [])),
    (zone(fault=((STS, "nxdomain"),)), STS, "TXT", ("NXDOMAIN", [])),
    (zone(fault=((STS, "timeout"),)), STS, "TXT", None),
    (zone(fault=((STS, "timeout"),)), "_smtp._tls.example.test", "TXT",
     ("NOERROR", ['_smtp._tls.example.test TXT "v=TLSRPTv1; '
                  'rua=mailto:tlsrpt@example.test,https://tlsrpt.example.test/report"'])),
    (zone(cname=CHAIN, fault=(("b.other.test", "servfail"),)), STS, "TXT",
     ("SERVFAIL", [])),
    # no data, no such name, not ours
    (zone(), MX1, "AAAA", ("NOERROR", [])),
    (zone(), "_tls.example.test", "TXT", ("NOERROR", [])),  # empty non-terminal
    (zone(), "nope.example.test", "A", ("NXDOMAIN", [])),
    (zone(), "_mta-sts.sub.example.test", "TXT", ("NXDOMAIN", [])),
    (zone(), "www.example.com", "A", ("REFUSED", [])),
    (zone(), "test", "SOA", ("REFUSED", [])),
    (zone(), "example.test", "SOA",
     ("NOERROR", ["example.test SOA ns.example.test. hostmaster.example.test. 1 0 0 0 0"])),
    # DNS-layer attacks
    (zone((Attack("drop-sts-txt"),)), STS, "TXT", ("NXDOMAIN", [])),
    (zone((Attack("drop-sts-txt"),), cname=CHAIN), STS, "TXT", ("NXDOMAIN", [])),
    (zone((Attack("drop-sts-txt"),)), "_smtp._tls.example.test", "TXT",
     ("NOERROR", ['_smtp._tls.example.test TXT "v=TLSRPTv1; '
                  'rua=mailto:tlsrpt@example.test,https://tlsrpt.example.test/report"'])),
    (zone((Attack("drop-tlsrpt-txt"),)), "_smtp._tls.example.test", "TXT", ("NXDOMAIN", [])),
    (zone((Attack("drop-tlsrpt-txt"),)), STS, "TXT",
     ("NOERROR", [f'_mta-sts.example.test TXT "v=STSv1; id={STS_ID}"'])),
    (zone((SPOOF,)), "example.test", "MX", ("NOERROR", ["example.test MX 10 mx.attacker.test."])),
    (zone((Attack("spoof-mx", hosts=(MX2,)),)), "example.test", "MX",
     ("NOERROR", ["example.test MX 10 mx1.example.test.", "example.test MX 20 mx.attacker.test."])),
    (zone((SPOOF,)), ATTACKER_MX, "A", ("NOERROR", ["mx.attacker.test A 127.0.0.2"])),
    (zone((SPOOF,)), "www.attacker.test", "A", ("NXDOMAIN", [])),
], ids=lambda v: v if isinstance(v, str) else None)
def test_answer(z: Zone, name: str, qtype: str, expected: tuple[str, list[str]] | None) -> None:
    assert ask(z, name, qtype) == expected


@pytest.mark.parametrize(("name", "qtype"), [
    ("example.test", "MX"), ("_mta-sts.example.test", "TXT"), (MX1, "A"), (MX1, "AAAA"),
    ("nope.example.test", "A"), ("example.test", "SOA"),
])
def test_every_record_has_ttl_0_and_no_data_carries_an_soa_minimum_0(name: str, qtype: str) -> None:
    z = zone(cname=CHAIN)
    reply = answer(z, DNSRecord.question(name, qtype))
    assert reply is not None
    assert all(rr.ttl == 0 for rr in reply.rr + reply.auth)
    if not reply.rr:
        (soa,) = reply.auth
        assert QTYPE[soa.rtype] == "SOA" and soa.rdata.times[-1] == 0


def test_answers_echo_the_askers_spelling_and_flags() -> None:
    reply = answer(zone(), DNSRecord.question("MX1.Example.Test", "A"))
    assert reply is not None
    assert str(reply.rr[0].rname) == "MX1.Example.Test."
    assert reply.header.aa and reply.header.ra and reply.header.qr


@pytest.mark.parametrize(("request_", "rcode"), [
    (DNSRecord(q=DNSQuestion("example.test", QTYPE.MX, CLASS.CS)), "REFUSED"),
    (DNSRecord(questions=[DNSQuestion("example.test"), DNSQuestion(MX1)]), "FORMERR"),
    (DNSRecord(), "FORMERR"),
], ids=["class-cs", "two-questions", "no-question"])
def test_odd_requests(request_: DNSRecord, rcode: str) -> None:
    reply = answer(zone(), request_)
    assert reply is not None and RCODE[reply.header.rcode] == rcode


def test_a_response_is_never_answered() -> None:
    assert answer(zone(), DNSRecord.question("example.test").reply()) is None


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"attacks": (SPOOF,), "addresses": {MX1: "127.0.0.1"}}, "mx.attacker.test"),
    ({"addresses": {MX1: "::1"}}, "IPv4"),
    ({"fault": (("example.test", "slow"),)}, "servfail"),
])
def test_build_zone_errors_name_the_culprit(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(LabError, match=words):
        zone(**kwargs)


def test_a_parent_domain_lookup_is_nxdomain_not_refused() -> None:
    # D-10: mail to sub.D looks only at _mta-sts.sub.D; a sender that climbs to D hears NXDOMAIN
    w = World("sub.example.test", DnsSpec(mx=(MX1,)), POLICY, ReceiverSpec(), MessageSpec())
    z = build_zone(w, ADDRESSES)
    assert ask(z, "_mta-sts.sub.example.test", "TXT") == (
        "NOERROR", [f'_mta-sts.sub.example.test TXT "v=STSv1; id={STS_ID}"'])
    assert ask(z, "_mta-sts.example.test", "TXT") == ("NXDOMAIN", [])


def test_a_world_without_policy_and_auto_txt_has_no_sts_record() -> None:
    w = World("example.test", DnsSpec(mx=(MX1,)), None, ReceiverSpec(), MessageSpec())
    assert ask(build_zone(w, ADDRESSES), "_mta-sts.example.test", "TXT") == ("NXDOMAIN", [])


# -- the server, over real sockets ----------------------------------------------------------

@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with DnsServer(zone(cname=CHAIN)) as s:
        yield s
        s.check()


def query(name: str, qtype: str, **kw: Any) -> dns.message.QueryMessage:
    q = dns.message.make_query(name, qtype, **kw)
    assert isinstance(q, dns.message.QueryMessage)
    return q


def texts(reply: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_mx_over_the_wire_is_recorded(server: DnsServer, transport: str) -> None:
    send = dns.asyncquery.udp if transport == "udp" else dns.asyncquery.tcp
    reply = await send(query("example.test", "MX"), "127.0.0.1", timeout=5, port=server.port)
    assert texts(reply) == ["10 mx1.example.test.", "20 mx2.example.test."]
    (q,) = server.take_queries()
    assert (q.transport, q.qname, q.qtype, q.rcode) == (transport, "example.test.", "MX", "NOERROR")
    assert q.answers == ("example.test. 0 IN MX 10 mx1.example.test.",
                         "example.test. 0 IN MX 20 mx2.example.test.")
    assert q.client.startswith("127.0.0.1:")
    assert server.take_queries() == []


async def test_a_resolver_follows_the_cname_chain_to_the_txt(server: DnsServer) -> None:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    got = await resolver.resolve("_mta-sts.example.test", "TXT", lifetime=5)
    assert [b"".join(r.strings) for r in got] == [f"v=STSv1; id={STS_ID}".encode()]
    assert got.canonical_name.to_text() == "b.other.test."
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nope.example.test", "A", lifetime=5)


async def test_several_queries_share_one_tcp_connection(server: DnsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for name in ("example.test", MX1):
            wire = query(name, "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        replies = []
        for _ in range(2):
            size = int.from_bytes(await reader.readexactly(2), "big")
            replies.append(dns.message.from_wire(await reader.readexactly(size)))
    finally:
        writer.close()
        await writer.wait_closed()
    assert [texts(r) for r in replies] == [[], ["127.0.0.1"]]
    assert [q.transport for q in server.take_queries()] == ["tcp", "tcp"]


async def test_a_big_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    records = tuple((f"v=STSv1; id={i}; " + "x" * 290,) for i in range(6))
    async with DnsServer(zone(sts_txt=records)) as s:
        q = query("_mta-sts.example.test", "TXT")
        small = await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=s.port,
                                         raise_on_truncation=False)
        edns = await dns.asyncquery.udp(query(STS, "TXT", use_edns=0, payload=4096), "127.0.0.1",
                                        timeout=5, port=s.port, raise_on_truncation=False)
        whole = await dns.asyncquery.tcp(q, "127.0.0.1", timeout=5, port=s.port)
    assert small.flags & dns.flags.TC and not small.answer
    notes = [(q.transport, q.note) for q in s.take_queries()]
    assert notes == [("udp", "truncated (TC): too big for UDP")] * 2 + [("tcp", "")]
    assert edns.flags & dns.flags.TC and edns.edns == 0  # 1232 at most, even when offered more
    assert not whole.flags & dns.flags.TC and len(texts(whole)) == 6


async def test_a_medium_answer_fits_with_edns_only() -> None:
    records = tuple((f"v=STSv1; id={i}; " + "x" * 200,) for i in range(3))
    async with DnsServer(zone(sts_txt=records)) as s:
        name = "_mta-sts.example.test"
        plain = await dns.asyncquery.udp(query(name, "TXT"), "127.0.0.1", timeout=5, port=s.port,
                                         raise_on_truncation=False)
        edns = await dns.asyncquery.udp(query(name, "TXT", use_edns=0, payload=1232), "127.0.0.1",
                                        timeout=5, port=s.port)
    assert plain.flags & dns.flags.TC
    assert len(texts(edns)) == 3


async def test_set_zone_changes_the_next_answer(server: DnsServer) -> None:
    server.set_zone(zone((SPOOF,)))
    reply = await dns.asyncquery.udp(query("example.test", "MX"), "127.0.0.1", timeout=5,
                                     port=server.port)
    assert texts(reply) == ["10 mx.attacker.test."]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_question_asked_again_gets_the_same_answer_under_its_own_id(
        server: DnsServer, transport: str) -> None:
    # the server keeps its answers per zone (DnsServer.respond): each ID answered as its own,
    # each asking recorded, and a new zone answered afresh
    send = dns.asyncquery.udp if transport == "udp" else dns.asyncquery.tcp
    replies = []
    for qid in (1, 2, 2, 65535):
        q = query("example.test", "MX")
        q.id = qid
        replies.append(await send(q, "127.0.0.1", timeout=5, port=server.port))  # checks the ID
    assert [r.id for r in replies] == [1, 2, 2, 65535]
    assert {tuple(texts(r)) for r in replies} == {("10 mx1.example.test.", "20 mx2.example.test.")}
    assert len(server.take_queries()) == 4
    other = query("example.test", "TXT")
    other.id = 1
    assert texts(await send(other, "127.0.0.1", timeout=5, port=server.port)) == []  # not the MX
    server.set_zone(zone((SPOOF,)))
    again = query("example.test", "MX")
    again.id = 1
    assert texts(await send(again, "127.0.0.1", timeout=5, port=server.port)) == [
        "10 mx.attacker.test."]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_timeout_fault_sends_nothing(transport: str) -> None:
    async with DnsServer(zone(fault=(("_mta-sts.example.test", "timeout"),))) as s:
        send = dns.asyncquery.udp if transport == "udp" else dns.asyncquery.tcp
        with pytest.raises(dns.exception.Timeout):
            await send(query("_mta-sts.example.test", "TXT"), "127.0.0.1", timeout=0.2, port=s.port)
        # ... while the rest of the zone still answers
        reply = await send(query("example.test", "MX"), "127.0.0.1", timeout=5, port=s.port)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [q.rcode for q in s.take_queries()] == ["TIMEOUT", "NOERROR"]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait(data)


async def test_malformed_udp_gets_formerr_or_nothing_and_the_server_lives(
        server: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Datagrams, remote_addr=("127.0.0.1", server.port))
    try:
        transport.sendto(b"\x01")  # not even a header: dropped
        # a sound header, then a question whose label runs past the end
        transport.sendto(b"\x12\x34" + b"\x00\x00" + b"\x00\x01" + b"\x00" * 6 + b"\x07trunc")
        formerr = dns.message.from_wire(await asyncio.wait_for(proto.got.get(), 5))
        transport.sendto(query(MX1, "A").to_wire())
        good = dns.message.from_wire(await asyncio.wait_for(proto.got.get(), 5))
    finally:
        transport.close()
    assert formerr.id == 0x1234 and formerr.rcode() == dns.rcode.FORMERR
    assert texts(good) == ["127.0.0.1"]
    log = server.take_queries()
    assert [q.rcode for q in log] == ["DROPPED", "FORMERR", "NOERROR"]
    assert "malformed" in log[0].note


async def test_a_response_sent_to_the_server_is_dropped(server: DnsServer) -> None:
    stray = query(MX1, "A")
    stray.flags |= dns.flags.QR
    with pytest.raises(dns.exception.Timeout):
        await dns.asyncquery.udp(stray, "127.0.0.1", timeout=0.2, port=server.port)
    (q,) = server.take_queries()
    assert (q.qname, q.rcode, q.note) == ("mx1.example.test.", "DROPPED", "a response, not a query")


async def test_malformed_tcp_does_not_kill_the_server(server: DnsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"\x00\x0c" + b"\xab\xcd" + b"\x00\x00" + b"\x00\x05" + b"\x00" * 6)
        size = int.from_bytes(await reader.readexactly(2), "big")
        reply = dns.message.from_wire(await reader.readexactly(size))
        writer.write(b"\x00\x40\x00")  # a length, then a hang-up mid-message
    finally:
        writer.close()
        await writer.wait_closed()
    assert reply.rcode() == dns.rcode.FORMERR
    good = await dns.asyncquery.tcp(query(MX1, "A"), "127.0.0.1", timeout=5, port=server.port)
    assert texts(good) == ["127.0.0.1"]


@pytest.mark.parametrize("host", ["192.0.2.1", "0.0.0.0", "localhost"])
async def test_refuses_to_bind_off_loopback(host: str) -> None:
    with pytest.raises(ServiceError):
        await DnsServer(bind_host=host).start()


async def test_udp_and_tcp_share_the_port_and_stop_is_idempotent() -> None:
    s = DnsServer(zone())
    await s.start()
    port = s.port
    assert port > 0
    await dns.asyncquery.udp(query(MX1, "A"), "127.0.0.1", timeout=5, port=port)
    await dns.asyncquery.tcp(query(MX1, "A"), "127.0.0.1", timeout=5, port=port)
    await s.stop()
    await s.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


def test_the_zone_module_is_sans_io() -> None:
    """lab/core/dnszone.py (zone, answers, wire encoding) opens no sockets and runs no loop: it
    imports none of asyncio/socket/ssl/selectors, and importing it pulls in no asyncio or ssl
    (dnslib itself imports socket, for address conversion only)."""
    assert not imported_roots("lab/core/dnszone.py") & {"asyncio", "socket", "ssl", "selectors"}
    assert loaded_by_importing("downgrade_lab.core.dnszone", among=frozenset({"asyncio", "ssl"})) == set()
