"""Misbehaving senders against the receiver and the proxy, over real sockets (issue 6).

A sender under test is by definition misbehaving. Whatever it does, no service may crash
(`check()` stays clean, the event loop logs no error), hang (every wait here is bounded), or
lose a message it already stored; and the proxy's connection record says what happened.
Each case runs straight at the receiver and through the proxy in front of it: a good delivery
before, the hostile session, a good delivery after, and both good messages still stored.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from downgrade_lab.harness.pki import PKI
from downgrade_lab.senders.base import Message
from downgrade_lab.senders.builtin.smtpclient import deliver_via_mx
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.services import receiver as receiver_module
from downgrade_lab.services.mitm import ConnectionRecord, MitmProxy
from downgrade_lab.services.receiver import Receiver

MX = "mx1.example.test"
DOMAIN = "example.test"
WAIT_S = 5.0  # the longest any single read here may take
TARGETS = ["receiver", "proxy"]
pytestmark = pytest.mark.timeout(60)


@dataclass
class World:
    pki: PKI
    receiver: Receiver
    proxy: MitmProxy

    def port(self, target: str) -> int:
        return self.receiver.addresses[MX][1] if target == "receiver" else self.proxy.ports[MX]

    async def deliver(self, target: str) -> str:
        """A good delivery (STARTTLS, verified) through `target`; returns its token."""
        env = LabEnv(domain=DOMAIN, dns_host="127.0.0.1", dns_port=53, ca_file=self.pki.ca_file,
                     ports={MX: self.port(target)})
        message = Message.make(f"bob@{DOMAIN}")
        attempt = await deliver_via_mx(env, MX, message, tls="required", verify=True, timeout=WAIT_S)
        assert attempt.delivered and attempt.tls, attempt.detail
        return message.token

    async def records(self) -> list[ConnectionRecord]:
        """The proxy's records once every connection has ended."""
        await asyncio.wait_for(self.proxy.wait_idle(), WAIT_S)
        return self.proxy.take_records()


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    with PKI() as p:
        yield p


@pytest.fixture
async def world(pki: PKI, caplog: pytest.LogCaptureFixture) -> AsyncIterator[World]:
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with Receiver(pki, [MX], {DOMAIN}) as rx, MitmProxy({MX: rx.addresses[MX]}, pki=pki) as px:
        yield World(pki, rx, px)
        await asyncio.wait_for(px.wait_idle(), WAIT_S)
        rx.check()  # no handler failed: everything hostile was a handled event
        px.check()
    # nothing the event loop had to log either (an exception in a callback, a lost task)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@dataclass
class Framed(World):
    """A world whose tests deliver a good message `before` the hostile session and one
    `after` it."""

    tokens: list[str] = field(default_factory=list)

    async def before(self, target: str) -> None:
        self.tokens.append(await self.deliver(target))
        await self.records()  # the hostile session's records start clean

    async def after(self, target: str) -> None:
        self.tokens.append(await self.deliver(target))


@pytest.fixture
async def framed(world: World) -> AsyncIterator[Framed]:
    """A good message before the hostile session and one after: both must be stored, and
    nothing else (no half message, nothing from the hostile session)."""
    world.receiver.take_messages()
    framed = Framed(world.pki, world.receiver, world.proxy)
    yield framed
    stored = world.receiver.take_messages()
    tokens = framed.tokens
    assert len(tokens) == 2, "a test forgot its good deliveries"
    assert [t for t in tokens if any(t.encode() in m.data for m in stored)] == tokens
    assert len(stored) == 2 and all(m.tls for m in stored)


# ---- a scripted raw client ---------------------------------------------------------------------

READ = object()  # in a script: wait (bounded) for the next reply bytes


async def session(port: int, script: list[bytes | object], *, linger: bool = True,
                  drain: bool = True) -> tuple[bytes, str]:
    """Play `script` against 127.0.0.1:`port`: bytes are sent, READ waits for replies. Then
    (with `drain`) read until the far side closes. Returns (all it said, how it ended:
    eof | reset | open). `linger=False` ends with an RST instead of a FIN."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    heard = bytearray()
    end = "open"
    try:
        for item in script:
            if item is READ:
                heard += await asyncio.wait_for(reader.read(65536), WAIT_S)
            else:
                assert isinstance(item, bytes)
                writer.write(item)
                await asyncio.wait_for(writer.drain(), WAIT_S)
        while drain:
            chunk = await asyncio.wait_for(reader.read(65536), WAIT_S)
            if not chunk:
                end = "eof"
                break
            heard += chunk
    except ConnectionError:
        end = "reset"
    except TimeoutError:
        end = "open"
    finally:
        if not linger:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), WAIT_S)
        except (ConnectionError, TimeoutError):
            pass
    return bytes(heard), end


def events(records: list[ConnectionRecord]) -> list[str]:
    return [e.said for r in records for e in r.transcript if e.kind == "event"]


def client_hello() -> bytes:
    """The first flight of a real TLS client: what a sender that skips STARTTLS sends."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=MX)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


ENVELOPE: list[bytes | object] = [READ, b"EHLO hostile.test\r\n", READ, b"MAIL FROM:<a@hostile.test>\r\n",
                                  READ, b"RCPT TO:<bob@example.test>\r\n", READ, b"DATA\r\n", READ]


# ---- the cases ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
async def test_garbage_bytes(framed: Framed, target: str) -> None:
    await framed.before(target)
    garbage = random.Random(6).randbytes(16 * 1024)
    heard, end = await session(framed.port(target), [READ, garbage, b"\r\nQUIT\r\n"])
    assert heard.startswith(b"220 ") and b"\n500 " in heard  # refused, line by line
    records = await framed.records()
    if target == "proxy":
        (record,) = records
        assert record.error is None and not record.live
        last = events(records)[-1]
        assert last.endswith("closed the connection") or last.startswith("protocol error")
    await framed.after(target)


@pytest.mark.parametrize("target", TARGETS)
async def test_a_1_mib_command_line(framed: Framed, target: str) -> None:
    await framed.before(target)
    heard, end = await session(framed.port(target), [READ, b"A" * (1 << 20) + b"\r\n", b"QUIT\r\n"])
    if target == "receiver":
        assert b"500 Command line too long" in heard and b"221" in heard and end == "eof"
    else:  # the proxy buffers at most MAX_LINE of a line: the sender broke the protocol
        assert end in ("eof", "reset")
        (err,) = [e for e in events(await framed.records()) if e.startswith("protocol error")]
        assert "sender: a line of 65536 bytes or more without a newline" in err
    await framed.after(target)


@pytest.mark.parametrize("target", TARGETS)
async def test_a_1_mib_line_inside_the_message(framed: Framed, target: str) -> None:
    await framed.before(target)
    body = b"Subject: long\r\n\r\n" + b"B" * (1 << 20) + b"\r\n.\r\nQUIT\r\n"
    heard, end = await session(framed.port(target), [*ENVELOPE, body])
    assert b"354 " in heard and end in ("eof", "reset")
    if target == "receiver":
        assert b"500 Line too long" in heard  # refused whole, nothing stored
    else:
        assert any("sender: a line of 65536 bytes" in e for e in events(await framed.records()))
    await framed.after(target)


@pytest.mark.parametrize("target", TARGETS)
async def test_slowloris_starves_no_one(framed: Framed, target: str) -> None:
    """Ten senders dribble EHLO one byte every 60 ms (about 1 s each); a good delivery
    meanwhile is not held up, and each dribbler is answered once its line is complete."""
    await framed.before(target)
    line = b"EHLO slow.test\r\n"

    async def dribble() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", framed.port(target))
        try:
            await asyncio.wait_for(reader.readline(), WAIT_S)  # the greeting
            for byte in line:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.06)
            reply = await asyncio.wait_for(reader.readuntil(b"250 HELP\r\n"), WAIT_S)
            writer.write(b"QUIT\r\n")
            await asyncio.wait_for(reader.read(), WAIT_S)
            return reply
        finally:
            writer.close()
            await writer.wait_closed()

    slow = [asyncio.create_task(dribble()) for _ in range(10)]
    await framed.after(target)
    assert not any(t.done() for t in slow)  # served while every dribbler is still at it
    replies = await asyncio.wait_for(asyncio.gather(*slow), 3 * WAIT_S)
    assert all(r.startswith(b"250-") for r in replies)
    if target == "proxy":
        assert len(await framed.records()) == 11  # ten dribblers and the good delivery


@pytest.mark.parametrize("target", TARGETS)
async def test_a_silent_sender_is_dropped_after_the_idle_timeout(
        framed: Framed, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await framed.before(target)
    monkeypatch.setattr(receiver_module, "IDLE_TIMEOUT_S", 0.3)
    heard, end = await session(framed.port(target), [READ])  # the greeting, then nothing
    assert heard.startswith(b"220 ") and end == "eof"
    if target == "proxy":  # the receiver gave up; the attacker passed that on
        assert events(await framed.records()) == ["receiver closed the connection"]
    monkeypatch.undo()
    await framed.after(target)


@pytest.mark.parametrize("linger", [True, False], ids=["fin", "rst"])
@pytest.mark.parametrize("target", TARGETS)
async def test_disconnect_mid_data_stores_nothing(framed: Framed, target: str, linger: bool) -> None:
    await framed.before(target)
    half = b"Subject: cut\r\n\r\nthe first half of a message that never ends\r\n"
    heard, _ = await session(framed.port(target), [*ENVELOPE, half], linger=linger, drain=False)
    assert b"354 " in heard
    if target == "proxy":
        records = await framed.records()
        assert [e.kind for r in records for e in r.transcript].count("data") == 0  # never ended
        assert events(records)[-1] == "sender closed the connection"
    else:  # the receiver has seen the end (and stored nothing) before the next session
        await asyncio.wait_for(framed.receiver.wait_idle(), WAIT_S)
        assert not any(b"the first half" in m.data for m in framed.receiver.messages)
    await framed.after(target)


@pytest.mark.parametrize("target", TARGETS)
async def test_plaintext_after_starttls(framed: Framed, target: str) -> None:
    await framed.before(target)
    junk = b"this is not a TLS record\r\n" * 10
    heard, end = await session(framed.port(target),
                               [READ, b"EHLO hostile.test\r\n", READ, b"STARTTLS\r\n", READ, junk])
    assert b"220 Ready to start TLS" in heard and end in ("eof", "reset")
    if target == "proxy":
        (record,) = await framed.records()
        assert events([record]) == ["tls-passthrough", "receiver closed the connection"]
        assert record.passthrough_to_receiver == len(junk)  # copied blind, as TLS would be
    await framed.after(target)


@pytest.mark.parametrize("target", TARGETS)
async def test_a_tls_client_hello_without_starttls(framed: Framed, target: str) -> None:
    await framed.before(target)
    heard, end = await session(framed.port(target), [client_hello(), b"\r\nQUIT\r\n"])
    assert heard.startswith(b"220 ")  # taken for (bad) commands, refused, never a handshake
    assert end in ("eof", "reset")
    if target == "proxy":
        (record,) = await framed.records()
        assert record.error is None
        assert record.passthrough_to_receiver == 0  # the relay read it as lines, not TLS
        assert events([record])  # how it ended: a closed side or a protocol error
    await framed.after(target)
