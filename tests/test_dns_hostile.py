"""Malformed DNS against the lab's DNS service (issue 6), beyond the cases in test_dns.py.

First `DnsServer.respond()` with arbitrary and mutated packets (no sockets): it never raises,
never records a handler error, and whatever it sends is a response to the asker's id. Then the
server over real sockets: bursts of garbage, hostile TCP framing and stalled TCP clients; it
keeps answering, `check()` stays clean, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dnslib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from downgrade_lab.core.model import DnsSpec, MessageSpec, PolicySpec, ReceiverSpec, World
from downgrade_lab.services.dns import DnsServer, Zone, build_zone

MX1 = "mx1.example.test"
WAIT_S = 5.0
pytestmark = pytest.mark.timeout(60)


def _zone() -> Zone:
    w = World("example.test", DnsSpec(mx=(MX1,), cname=(("_mta-sts.example.test", "a.other.test"),)),
              PolicySpec(mx=(MX1,)), ReceiverSpec(), MessageSpec())
    return build_zone(w, {MX1: "127.0.0.1", "mta-sts.example.test": "127.0.0.1"})


ZONE = _zone()
QUERIES = [dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
           for name, rdtype, edns in [("example.test", "MX", False), (MX1, "A", 0),
                                      ("_mta-sts.example.test", "TXT", 0),
                                      ("nope.example.test", "AAAA", False),
                                      ("www.example.com", "ANY", 0)]]


def check_reply(data: bytes, out: bytes | None) -> None:
    """Silence, or a DNS response (QR set) to the id asked with."""
    if out is None:
        return
    assert len(out) >= 12 and out[:2] == data[:2] and out[2] & 0x80
    dnslib.DNSRecord.parse(out)  # well-formed (dnspython trips over a NUL in a label)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real query with a few bytes flipped, cut or inserted: past the header, into the
    question, the compression pointers and the EDNS record."""
    data = bytearray(draw(st.sampled_from(QUERIES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "pointer"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:  # a compression pointer to anywhere, itself included (a loop)
            data[at:at + 2] = bytes([0xC0 | draw(st.integers(0, 0x3F)), draw(st.integers(0, 255))])
    return bytes(data)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=600), mutated()), transport=st.sampled_from(["udp", "tcp"]))
def test_any_packet_gets_silence_or_a_response_and_never_an_error(data: bytes, transport: str) -> None:
    server = DnsServer(ZONE)
    out = server.respond(data, transport, "127.0.0.1:5353")
    check_reply(data, out)
    server.check()  # nothing was a handler error
    (seen,) = server.take_queries()
    assert seen.rcode  # the log says what became of it (an rcode, DROPPED or TIMEOUT)


# ---- over real sockets --------------------------------------------------------------------------

@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with DnsServer(ZONE) as s:
        yield s
        s.check()


async def alive(server: DnsServer) -> None:
    """The server still answers over UDP and TCP. UDP asks again as a resolver would: a burst
    may have filled the socket's receive buffer, and the kernel drops what does not fit."""
    for _ in range(10):
        try:
            reply = await dns.asyncquery.udp(dns.message.make_query(MX1, "A"), "127.0.0.1",
                                             timeout=WAIT_S / 10, port=server.port)
            break
        except dns.exception.Timeout:
            continue
    else:
        pytest.fail("no UDP answer in 10 tries")
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["127.0.0.1"]
    reply = await dns.asyncquery.tcp(dns.message.make_query(MX1, "A"), "127.0.0.1",
                                     timeout=WAIT_S, port=server.port)
    assert reply.answer


async def test_a_burst_of_garbage_datagrams(server: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", server.port))
    rng = random.Random(6)
    try:
        for _ in range(300):
            transport.sendto(rng.randbytes(rng.randrange(0, 512)))
        transport.sendto(b"\x00" * 65507)  # the largest UDP payload there is
        transport.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01")
    finally:
        transport.close()
    await alive(server)
    log = server.take_queries()
    assert log and {q.rcode for q in log} <= {"DROPPED", "FORMERR", "NOERROR",
                                                          "NXDOMAIN", "REFUSED", "NOTIMP",
                                                          "SERVFAIL"}


@pytest.mark.parametrize("frames", [
    b"\x00\x00",  # a zero-length message
    b"\x00\x00" * 50 + b"\x00\x05abc",  # then a cut one
    b"\xff\xff" + b"\x00" * 1000,  # announces 64 KiB, sends 1000 bytes, hangs up
    b"\x00\x0c" + b"\xab\xcd\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # a response: dropped
], ids=["zero-length", "zero-then-cut", "short-of-announced", "a-response"])
async def test_hostile_tcp_framing(server: DnsServer, frames: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(frames)
        await writer.drain()
        writer.write_eof()
        rest = await asyncio.wait_for(reader.read(), WAIT_S)  # the server ends it, answers or not
    finally:
        writer.close()
        await writer.wait_closed()
    assert len(rest) < 200
    await alive(server)


async def test_stalled_tcp_clients_block_no_one_and_stop_ends_them() -> None:
    s = DnsServer(ZONE)
    await s.start()
    stalled = [await asyncio.open_connection("127.0.0.1", s.port) for _ in range(50)]
    for _, writer in stalled[:25]:
        writer.write(b"\x00\x40\x12")  # half a length-prefixed query, then nothing
    await alive(s)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(s.stop(), WAIT_S)
    assert asyncio.get_running_loop().time() - started < 2
    for reader, writer in stalled:
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # closed by stop()
        writer.close()
        await writer.wait_closed()
    s.check()


async def test_a_taken_udp_twin_draws_another_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """TCP binds first (port 0 skips ports held by TIME_WAIT connections, which a matrix or a
    load test leaves by the thousand); a UDP twin already taken makes it draw again."""
    loop = asyncio.get_running_loop()
    real = loop.create_datagram_endpoint
    calls: list[int] = []

    async def taken_twice(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["local_addr"][1])
        if len(calls) <= 2:
            raise OSError(errno.EADDRINUSE, "address already in use")
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "create_datagram_endpoint", taken_twice)
    async with DnsServer(ZONE) as s:
        assert len(calls) == 3 and calls[-1] == s.port  # the TCP port of the third draw
        monkeypatch.undo()
        await alive(s)


# A label "length" of 0x61: dnslib reads 97 bytes as one label, then cannot write the name back
# (found by scripts/fuzz_atheris.py). The asker's fault: FORMERR, not a lab error.
LONG_LABEL = (b"\x45\x70\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x08&&&&&_mt\x61" + b"\x02" * 97
              + b"\x00\x00\x10\x00\x01")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_name_dnslib_cannot_write_back_is_formerr(transport: str) -> None:
    server = DnsServer(ZONE)
    out = server.respond(LONG_LABEL, transport)
    assert out is not None and dnslib.DNSRecord.parse(out).header.rcode == dnslib.RCODE.FORMERR
    server.check()
    (seen,) = server.take_queries()
    assert seen.rcode == "FORMERR" and "malformed" in seen.note
