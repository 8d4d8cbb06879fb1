"""The HTTPS policy host: `route()` one line per case, then real TLS fetches on port 0 with a
client that trusts only the lab CA and dials mta-sts.example.test at 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509

from downgrade_lab.core.model import Attack, PolicySpec
from downgrade_lab.errors import ServiceError
from downgrade_lab.harness.pki import PKI
from downgrade_lab.services.policyhost import WELL_KNOWN, PolicyHost, route

NAME = "mta-sts.example.test"
POLICY = PolicySpec(mode="enforce", mx=("mx1.example.test",), max_age=86400)
BODY = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmax_age: 86400\r\n"
MOVED = PolicySpec(mx=("mx1.example.test",), max_age=86400, redirect="/moved.txt")
HTML = PolicySpec(content_type="text/html", raw="<p>")
HTML_UTF8, PLAIN_UTF8 = "text/html; charset=utf-8", "text/plain;charset=UTF-8"


@pytest.mark.parametrize(("policy", "method", "path", "status", "headers", "body"), [
    (POLICY, "GET", WELL_KNOWN, 200, {"Content-Type": "text/plain"}, BODY),
    (POLICY, "HEAD", WELL_KNOWN, 200, {"Content-Type": "text/plain"}, BODY),
    (POLICY, "GET", "/", 404, {}, b"not found\n"),
    (POLICY, "POST", WELL_KNOWN, 405, {"Allow": "GET, HEAD"}, b""),
    (None, "GET", WELL_KNOWN, 404, {}, b"no MTA-STS policy here\n"),
    (PolicySpec(status=500, raw="oops"), "GET", WELL_KNOWN, 500, {}, b"oops"),
    (HTML, "GET", WELL_KNOWN, 200, {"Content-Type": "text/html"}, b"<p>"),
    (MOVED, "GET", WELL_KNOWN, 301, {"Location": "/moved.txt"}, b""),
    (MOVED, "GET", "/moved.txt", 200, {"Content-Type": "text/plain"}, BODY),
    (POLICY, "GET", "/moved.txt", 404, {}, b"not found\n"),
], ids=["ok", "head", "other-path", "post", "no-policy", "500", "html", "redirect",
        "redirect-target", "no-redirect-target"])
def test_route(policy: PolicySpec | None, method: str, path: str, status: int,
               headers: dict[str, str], body: bytes) -> None:
    reply = route(policy, method, path)
    assert reply.status == status
    assert headers.items() <= dict(reply.headers).items()
    assert reply.body == body


# -- over real sockets ----------------------------------------------------------------------

class _LabResolver(AbstractResolver):
    """Every name is 127.0.0.1, as the lab's DNS says in the loopback topology."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    with PKI() as p:
        yield p


@pytest.fixture
async def host(pki: PKI) -> AsyncIterator[PolicyHost]:
    async with PolicyHost(pki, "example.test") as h:
        h.configure(POLICY)
        yield h
        h.check()


@asynccontextmanager
async def session(pki: PKI) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(resolver=_LabResolver(), ssl=pki.client_context())
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


async def fetch(pki: PKI, port: int, path: str = WELL_KNOWN, *, limit_s: float = 5,
                **kw: Any) -> tuple[int, dict[str, str], bytes]:
    async with session(pki) as s:
        async with s.get(f"https://{NAME}:{port}{path}", allow_redirects=False,
                         timeout=aiohttp.ClientTimeout(total=limit_s), **kw) as r:
            return r.status, dict(r.headers), await r.read()


async def test_serves_the_policy_with_the_exact_content_type_and_records_the_fetch(
        pki: PKI, host: PolicyHost) -> None:
    status, headers, body = await fetch(pki, host.port, headers={"User-Agent": "probe/1"})
    assert (status, headers["Content-Type"], body) == (200, "text/plain", BODY)
    (req,) = host.take_requests()
    assert (req.sni, req.method, req.path, req.status) == (NAME, "GET", WELL_KNOWN, 200)
    assert (req.host, req.user_agent, req.blocked) == (f"{NAME}:{host.port}", "probe/1", "")
    assert host.take_requests() == []
    (hello,) = host.take_handshakes()
    assert (hello.sni, hello.identity, hello.cert) == (NAME, NAME, "valid")


@pytest.mark.parametrize(("policy", "status", "content_type", "body"), [
    (PolicySpec(status=404, raw="gone"), 404, "text/plain", b"gone"),
    (PolicySpec(status=500, raw="oops"), 500, "text/plain", b"oops"),
    (PolicySpec(content_type=HTML_UTF8, raw="<p>"), 200, HTML_UTF8, b"<p>"),
    (PolicySpec(content_type=PLAIN_UTF8, raw="x"), 200, PLAIN_UTF8, b"x"),
    (PolicySpec(raw="v" * 70_000), 200, "text/plain", b"v" * 70_000),  # beyond the 64 KiB of F-06
    (None, 404, "text/plain", b"no MTA-STS policy here\n"),
], ids=["404", "500", "html", "charset", "oversized", "no-policy"])
async def test_serves_what_is_configured(pki: PKI, host: PolicyHost, policy: PolicySpec | None,
                                         status: int, content_type: str, body: bytes) -> None:
    host.configure(policy)
    got_status, headers, got_body = await fetch(pki, host.port)
    assert (got_status, headers["Content-Type"], got_body) == (status, content_type, body)


async def test_a_redirect_is_not_followed_unless_the_client_chooses_to(pki: PKI,
                                                                     host: PolicyHost) -> None:
    host.configure(MOVED)
    status, headers, body = await fetch(pki, host.port)
    assert (status, headers["Location"], body) == (301, "/moved.txt", b"")
    # F-03: a sender that follows redirects finds a valid policy, which it must not use
    async with session(pki) as s, s.get(f"https://{NAME}:{host.port}{WELL_KNOWN}") as r:
        assert (r.status, await r.read()) == (200, BODY)
    assert [(r.path, r.status) for r in host.take_requests()] == [
        (WELL_KNOWN, 301), (WELL_KNOWN, 301), ("/moved.txt", 200)]


@pytest.mark.parametrize("variant", ["valid", "expired", "wrong-name", "untrusted", "self-signed"])
async def test_only_the_valid_certificate_verifies(pki: PKI, host: PolicyHost,
                                                   variant: str) -> None:
    host.configure(PolicySpec(mx=("mx1.example.test",), max_age=86400, cert=variant))
    if variant == "valid":
        assert (await fetch(pki, host.port))[0] == 200
        assert len(host.take_requests()) == 1
    else:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(pki, host.port)
        assert host.take_requests() == []  # the client hung up before asking anything
    (hello,) = host.take_handshakes()
    assert (hello.sni, hello.cert) == (NAME, variant)


async def _peer_cert(port: int, server_hostname: str | None) -> tuple[x509.Certificate, Any]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # look at what is presented, whatever it is
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname=server_hostname)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der), reader


@pytest.mark.parametrize(("sent", "recorded", "identity"), [
    (NAME, NAME, NAME),
    ("MTA-STS.Example.Test", "MTA-STS.Example.Test", NAME),
    ("other.example.test", "other.example.test", "other.example.test"),
    (None, None, NAME),  # no SNI: the default identity answers; the lab notes it (F-10)
], ids=["policy-host", "upper-case", "other-name", "no-sni"])
async def test_the_certificate_follows_the_sni_and_the_sni_is_recorded(
        host: PolicyHost, sent: str | None, recorded: str | None, identity: str) -> None:
    host.configure(PolicySpec(cert="expired"))
    cert, _ = await _peer_cert(host.port, sent)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [identity]
    assert cert.not_valid_after_utc.timestamp() < time.time()  # the variant applies without SNI too
    (hello,) = host.take_handshakes()
    assert (hello.sni, hello.identity, hello.cert) == (recorded, identity, "expired")


async def test_delay_holds_the_answer_back(pki: PKI, host: PolicyHost) -> None:
    host.configure(PolicySpec(mx=("mx1.example.test",), max_age=86400, delay_s=0.3))
    with pytest.raises(asyncio.TimeoutError):
        await fetch(pki, host.port, limit_s=0.1)
    host.configure(PolicySpec(mx=("mx1.example.test",), max_age=86400, delay_s=0.3))  # next step
    started = time.monotonic()
    assert (await fetch(pki, host.port))[0] == 200
    assert time.monotonic() - started >= 0.3
    assert [r.status for r in host.take_requests()] == [200, 200]


async def test_a_trickling_body_times_out_while_a_brisk_one_arrives_whole(
        pki: PKI, host: PolicyHost) -> None:
    host.configure(POLICY, trickle_s=0.05)
    with pytest.raises(asyncio.TimeoutError):
        await fetch(pki, host.port, limit_s=0.3)
    host.configure(POLICY, trickle_s=0.001)
    assert (await fetch(pki, host.port))[2] == BODY


async def test_block_refused_refuses_and_the_port_comes_back(pki: PKI, host: PolicyHost) -> None:
    port = host.port
    host.configure(POLICY, [Attack("block-policy-fetch", how="refused")])
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await fetch(pki, port)
    assert caught.value.os_error.errno == errno.ECONNREFUSED
    host.configure(POLICY)
    assert (host.port, (await fetch(pki, port))[0]) == (port, 200)
    assert [r.status for r in host.take_requests()] == [200]  # a refused SYN leaves no trace


@pytest.mark.parametrize(("how", "error"), [
    ("reset", aiohttp.ClientError),
    ("timeout", asyncio.TimeoutError),
])
async def test_block_reset_and_timeout_swallow_the_connection(pki: PKI, host: PolicyHost, how: str,
                                                              error: type[Exception]) -> None:
    host.configure(POLICY, [Attack("block-policy-fetch", how=how)])
    with pytest.raises(error):
        await fetch(pki, host.port, limit_s=0.3)
    assert [(r.blocked, r.status, r.sni) for r in host.take_requests()] == [(how, 0, None)]
    host.configure(POLICY)
    assert (await fetch(pki, host.port))[0] == 200


async def test_reset_is_a_reset(host: PolicyHost) -> None:
    host.configure(POLICY, [Attack("block-policy-fetch", how="reset")])
    reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
    try:
        with pytest.raises(ConnectionResetError):  # RST, not a polite FIN (which reads b"")
            await reader.read(1)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("bind_host", ["192.0.2.1", "0.0.0.0", "localhost"])
async def test_refuses_to_bind_off_loopback(pki: PKI, bind_host: str) -> None:
    with pytest.raises(ServiceError):
        await PolicyHost(pki, "example.test", bind_host=bind_host).start()


async def test_stop_is_idempotent_and_frees_the_port(pki: PKI) -> None:
    h = PolicyHost(pki, "example.test")
    await h.start()
    port = h.port
    await h.stop()
    await h.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))  # the holder is gone too
    finally:
        probe.close()


@pytest.mark.parametrize("end", ["configure", "stop"])
async def test_a_client_stuck_in_its_handshake_is_dropped(pki: PKI, end: str) -> None:
    h = PolicyHost(pki, "example.test")
    await h.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = pki.client_context().wrap_bio(incoming, outgoing, server_hostname=NAME)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        writer.write(outgoing.read())  # a ClientHello, and then nothing more
        assert await reader.read(1)  # the server answered it: it now waits for our Finished
        if end == "configure":
            h.configure(POLICY)
        else:
            await h.stop()
        with contextlib.suppress(ConnectionResetError):
            while await asyncio.wait_for(reader.read(4096), 5):
                pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await h.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing of the host lives on
