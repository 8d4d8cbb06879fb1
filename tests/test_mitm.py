"""The attacker's proxy over real sockets and real TLS: a real aiosmtpd receiver (in this loop,
port 0) behind the proxy, driven by aiosmtplib as the sender."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP

from downgrade_lab.core.model import Attack
from downgrade_lab.core.smtp import Relay
from downgrade_lab.errors import ServiceError
from downgrade_lab.harness.pki import PKI
from downgrade_lab.services.mitm import ConnectionRecord, MitmProxy

MX1, MX2 = "mx1.example.test", "mx2.example.test"
SENDER, RCPT = "alice@sender.test", "bob@example.test"


@dataclass
class Sink:
    """The genuine receiver's handler: keeps each message and whether it came inside TLS."""

    messages: list[tuple[bytes, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.content, session.ssl is not None))
        return "250 2.0.0 queued"


@dataclass
class Upstream:
    sink: Sink
    addresses: dict[str, tuple[str, int]]


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    with PKI() as p:
        yield p


@pytest.fixture
async def upstream(pki: PKI) -> AsyncIterator[Upstream]:
    loop = asyncio.get_running_loop()
    sink = Sink()
    servers, addresses = [], {}
    for host in (MX1, MX2):
        def factory(host: str = host) -> AiosmtpdSMTP:
            return AiosmtpdSMTP(sink, hostname=host, tls_context=pki.server_context(host),
                                loop=loop)
        server = await loop.create_server(factory, "127.0.0.1", 0)
        servers.append(server)
        addresses[host] = ("127.0.0.1", server.sockets[0].getsockname()[1])
    yield Upstream(sink, addresses)
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def proxy(pki: PKI, upstream: Upstream) -> AsyncIterator[MitmProxy]:
    async with MitmProxy(upstream.addresses, pki=pki) as p:
        yield p
        await asyncio.wait_for(p.wait_idle(), 5)
        p.check()  # no handler error in any test that got this far


async def dial(proxy: MitmProxy, host: str) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=proxy.ports[host], start_tls=False,
                             local_hostname="sender.test", timeout=10)
    await client.connect()
    await client.ehlo()
    return client


def message(token: str) -> bytes:
    return f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: t\r\n\r\n{token}\r\n".encode()


async def finished(proxy: MitmProxy) -> list[ConnectionRecord]:
    await asyncio.wait_for(proxy.wait_idle(), 5)
    return proxy.take_records()


def changed(record: ConnectionRecord) -> list[tuple[str, str | None, str | None]]:
    return [(e.said, e.heard, e.attack) for e in record.transcript if e.changed]


# ---- no attack: TLS end to end with the genuine certificate, and its failing twin ----

async def test_no_attack_tls_reaches_the_genuine_receiver(pki: PKI, proxy: MitmProxy,
                                                          upstream: Upstream) -> None:
    client = await dial(proxy, MX1)
    assert client.supports_extension("starttls")
    await client.starttls(tls_context=pki.client_context(), server_hostname=MX1)
    assert client.transport is not None
    cert = client.transport.get_extra_info("peercert")
    assert ("DNS", MX1) in cert["subjectAltName"]
    await client.sendmail(SENDER, [RCPT], message("token-tls-1"))
    await client.quit()
    assert upstream.sink.messages == [(message("token-tls-1"), True)]
    (record,) = await finished(proxy)
    assert not record.saw_mail_from and b"token-tls-1" not in record.client_plaintext
    assert "tls-passthrough" in [e.said for e in record.transcript] and not changed(record)
    assert record.passthrough_to_receiver > 0 and record.passthrough_to_sender > 0
    assert record.error is None and record.attacks == ()


async def test_no_attack_but_wrong_name_fails_verification(pki: PKI, proxy: MitmProxy) -> None:
    # proof that the check above means something: the client really verifies through the proxy
    client = await dial(proxy, MX1)
    with pytest.raises((ssl.SSLError, aiosmtplib.SMTPException)):
        await client.starttls(tls_context=pki.client_context(), server_hostname=MX2)
    client.close()
    await finished(proxy)


# ---- the three downgrades ----

async def test_strip_hides_starttls_answers_502_and_reads_the_mail(proxy: MitmProxy,
                                                                    upstream: Upstream) -> None:
    proxy.set_attacks([Attack("strip-starttls")])
    client = await dial(proxy, MX1)
    assert not client.supports_extension("starttls")
    assert (await client.execute_command(b"STARTTLS")).code == 502
    await client.sendmail(SENDER, [RCPT], message("token-strip-2"))
    await client.quit()
    assert upstream.sink.messages == [(message("token-strip-2"), False)]
    (record,) = await finished(proxy)
    assert record.saw_mail_from and b"token-strip-2" in record.client_plaintext
    (ehlo, starttls, answer) = changed(record)
    assert "STARTTLS" in (ehlo[0] or "") and "STARTTLS" not in (ehlo[1] or "")
    assert starttls == ("STARTTLS", None, "strip-starttls")
    assert answer[1] is not None and answer[1].startswith("502 ")
    assert record.attacks == ("strip-starttls",)


async def test_reject_offers_starttls_then_answers_454(pki: PKI, proxy: MitmProxy) -> None:
    proxy.set_attacks([Attack("reject-starttls")])
    client = await dial(proxy, MX1)
    assert client.supports_extension("starttls")
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        await client.starttls(tls_context=pki.client_context(), server_hostname=MX1)
    assert info.value.code == 454
    await client.quit()
    (record,) = await finished(proxy)
    assert [a for _, _, a in changed(record)] == ["reject-starttls", "reject-starttls"]
    assert not record.saw_mail_from


async def test_corrupt_renames_the_capability_and_the_receiver_refuses(proxy: MitmProxy) -> None:
    proxy.set_attacks([Attack("corrupt-starttls")])
    client = await dial(proxy, MX1)
    assert not client.supports_extension("starttls") and client.supports_extension("xxxxxxxa")
    assert (await client.execute_command(b"STARTTLS")).code in (500, 502)
    await client.quit()
    (record,) = await finished(proxy)
    assert ("STARTTLS", "XXXXXXXA", "corrupt-starttls") in changed(record)


async def test_attack_on_mx2_only_leaves_mx1_intact(pki: PKI, proxy: MitmProxy) -> None:
    proxy.set_attacks([Attack("strip-starttls", hosts=(MX2,)), Attack("drop-sts-txt")])
    one, two = await dial(proxy, MX1), await dial(proxy, MX2)
    assert one.supports_extension("starttls") and not two.supports_extension("starttls")
    await one.starttls(tls_context=pki.client_context(), server_hostname=MX1)
    await one.quit()
    await two.quit()
    records = {r.mx: r for r in await finished(proxy)}
    assert records[MX1].attacks == ()
    assert records[MX2].attacks == ("strip-starttls(hosts=mx2.example.test)",)


async def test_attacks_change_for_new_connections_only(proxy: MitmProxy) -> None:
    before = await dial(proxy, MX1)
    proxy.set_attacks([Attack("strip-starttls")])
    after = await dial(proxy, MX1)
    await before.ehlo()
    assert before.supports_extension("starttls") and not after.supports_extension("starttls")
    await before.quit()
    await after.quit()
    await finished(proxy)


# ---- intercept-tls and inject-response ----

async def test_intercept_is_refused_by_a_verifying_sender(pki: PKI, proxy: MitmProxy,
                                                          upstream: Upstream) -> None:
    proxy.set_attacks([Attack("intercept-tls", cert="wrong-name")])
    client = await dial(proxy, MX1)
    with pytest.raises((ssl.SSLError, aiosmtplib.SMTPException)):
        await client.starttls(tls_context=pki.client_context(), server_hostname=MX1)
    client.close()
    (record,) = await finished(proxy)
    said = [e.said for e in record.transcript]
    assert "tls-intercepted" in said and any("handshake with the sender failed" in s for s in said)
    assert not record.saw_mail_from and upstream.sink.messages == []


async def test_intercept_reads_the_mail_of_a_sender_that_does_not_verify(
        proxy: MitmProxy, upstream: Upstream) -> None:
    proxy.set_attacks([Attack("intercept-tls", cert="self-signed")])
    client = await dial(proxy, MX1)
    trusting = ssl.create_default_context()
    trusting.check_hostname = False
    trusting.verify_mode = ssl.CERT_NONE
    await client.starttls(tls_context=trusting, server_hostname=MX1)
    await client.sendmail(SENDER, [RCPT], message("token-intercept-3"))
    await client.quit()
    # the receiver terminated TLS (with the attacker), so only the proxy's evidence tells
    assert upstream.sink.messages == [(message("token-intercept-3"), True)]
    (record,) = await finished(proxy)
    assert record.saw_mail_from and b"token-intercept-3" in record.client_plaintext
    assert any(e.tls and e.said.startswith("MAIL FROM") for e in record.transcript)


async def test_inject_smuggles_plaintext_after_the_220(proxy: MitmProxy) -> None:
    proxy.set_attacks([Attack("inject-response")])
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[MX1])
    await reader.readuntil(b"\r\n")
    writer.write(b"EHLO sender.test\r\n")
    await reader.readuntil(b"250 HELP\r\n")
    writer.write(b"STARTTLS\r\n")
    got = await reader.readuntil(b"250 PIPELINING\r\n")
    assert got == (b"220 Ready to start TLS\r\n"
                   b"250-attacker.invalid injected before TLS\r\n250 PIPELINING\r\n")
    writer.close()
    await writer.wait_closed()
    (record,) = await finished(proxy)
    assert ("inject-response", "attacker") in [(e.attack, e.origin) for e in record.transcript]


# ---- lifecycle, records, errors ----

@pytest.mark.parametrize(("upstream_address", "bind_host"), [
    ("10.0.0.1", "127.0.0.1"), ("192.0.2.1", "127.0.0.1"), ("mx1.example.test", "127.0.0.1"),
    ("127.0.0.1", "0.0.0.0"), ("127.0.0.1", "192.0.2.1"),
], ids=["private-upstream", "documentation-upstream", "name-upstream", "wildcard-bind",
        "remote-bind"])
def test_refuses_anything_but_lab_addresses(upstream_address: str, bind_host: str) -> None:
    with pytest.raises(ServiceError):
        MitmProxy({MX1: (upstream_address, 25)}, bind_host=bind_host)


def test_intercept_needs_the_pki() -> None:
    proxy = MitmProxy({MX1: ("127.0.0.1", 25)})
    proxy.set_attacks([Attack("strip-starttls")])
    with pytest.raises(ServiceError, match="PKI"):
        proxy.set_attacks([Attack("intercept-tls")])


async def test_stop_with_an_open_connection_returns_promptly(upstream: Upstream) -> None:
    proxy = MitmProxy(upstream.addresses)
    await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[MX1])
    assert (await reader.readuntil(b"\r\n")).startswith(b"220 ")  # the proxy is connected upstream
    await asyncio.wait_for(proxy.stop(), 2)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await reader.readuntil(b"\r\n")
    writer.close()
    await writer.wait_closed()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mitm")]
    await proxy.stop()  # idempotent
    assert proxy.ports == {}


async def test_an_upstream_that_refuses_is_not_a_lab_error() -> None:
    with socket.socket() as s:  # a port nobody listens on any more
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with MitmProxy({MX1: ("127.0.0.1", dead)}) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[MX1])
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        (record,) = await finished(proxy)
        assert record.error is not None and "unreachable" in record.error
        proxy.check()


async def test_a_bug_in_the_relay_is_recorded_and_rechecked(monkeypatch: pytest.MonkeyPatch,
                                                            proxy: MitmProxy) -> None:
    def boom(self: Relay, data: bytes) -> list[Any]:
        raise ZeroDivisionError("relay bug")
    monkeypatch.setattr(Relay, "receive_client", boom)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[MX1])
    await reader.readuntil(b"\r\n")
    writer.write(b"EHLO x\r\n")
    assert await reader.read() == b""  # the proxy closed the connection
    writer.close()
    await writer.wait_closed()
    (record,) = await finished(proxy)
    assert record.error is not None and "relay bug" in record.error
    with pytest.raises(ServiceError, match="relay bug"):
        proxy.check()


async def test_take_records_returns_live_snapshots_then_only_what_is_new(proxy: MitmProxy) -> None:
    client = await dial(proxy, MX1)
    (live,) = proxy.take_records()
    assert live.live and not live.continued
    assert [e.kind for e in live.transcript] == ["reply", "command", "reply"]  # greeting, EHLO
    assert proxy.take_records() == []  # nothing new yet
    await client.quit()
    (rest,) = await finished(proxy)
    assert rest.continued and not rest.live
    assert rest.transcript[0].said == "QUIT" and rest.client_plaintext == b"QUIT\r\n"
    assert proxy.take_records() == []
