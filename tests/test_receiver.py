"""The genuine MX: real sockets on port 0, real TLS with the lab CA, aiosmtplib as the client."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator

import aiosmtplib
import pytest
from cryptography import x509

from downgrade_lab.core.model import ReceiverSpec
from downgrade_lab.errors import LabError, ServiceError
from downgrade_lab.harness.pki import PKI, WRONG_NAME
from downgrade_lab.senders.base import Message
from downgrade_lab.senders.builtin.smtpclient import deliver_via_mx
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.services.receiver import Receiver

MX1, MX2 = "mx1.example.test", "mx2.example.test"


@pytest.fixture
def pki() -> Iterator[PKI]:
    with PKI() as p:
        yield p


@pytest.fixture
async def receiver(pki: PKI) -> AsyncIterator[Receiver]:
    async with Receiver(pki, [MX1, MX2], {"example.test"}) as r:
        yield r
        r.check()  # nothing went wrong inside a handler


def env_for(pki: PKI, receiver: Receiver, ports: dict[str, int] | None = None) -> LabEnv:
    ports = ports or {host: addr[1] for host, addr in receiver.addresses.items()}
    return LabEnv(domain="example.test", dns_host="127.0.0.1", dns_port=53, ca_file=pki.ca_file,
                  ports=ports)


def no_verify() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def handshake(addr: tuple[str, int], sni: str | None) -> tuple[str, list[str], list[str]]:
    """(greeting, EHLO lines after TLS, DNS names of the certificate presented) for a STARTTLS
    with `sni` (None: no SNI, since an IP address is never sent as SNI)."""
    client = aiosmtplib.SMTP(hostname=addr[0], port=addr[1], start_tls=False,
                             local_hostname="sender.test", timeout=5)
    greeting = await client.connect()
    try:
        await client.starttls(server_hostname=sni, tls_context=no_verify())
        ehlo = await client.ehlo()
        der = client.get_transport_info("ssl_object").getpeercert(binary_form=True)
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
        return greeting.message, ehlo.message.splitlines(), names
    finally:
        await client.quit()


async def test_starttls_delivery_records_tls_version_cipher_and_sni(
        pki: PKI, receiver: Receiver) -> None:
    message = Message.make("bob@example.test")
    attempt = await deliver_via_mx(env_for(pki, receiver), MX1, message, tls="required",
                                   verify=True, timeout=5)
    assert attempt.delivered and attempt.verified and attempt.tls_version == "TLSv1.3"
    [stored] = receiver.find(message.token)
    assert (stored.mx, stored.tls, stored.tls_version, stored.sni) == (MX1, True, "TLSv1.3", MX1)
    assert stored.cipher == attempt.cipher and stored.cipher
    assert stored.mail_from == message.mail_from and stored.rcpt_tos == ("bob@example.test",)
    assert stored.data.rstrip(b"\r\n") == message.data.rstrip(b"\r\n")
    assert stored.to_json()["tls_version"] == "TLSv1.3"
    assert receiver.take_messages() == [stored] and receiver.messages == []


async def test_without_starttls_it_is_not_offered_and_mail_is_stored_as_plaintext(
        pki: PKI, receiver: Receiver) -> None:
    receiver.configure(ReceiverSpec(starttls=False))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=receiver.addresses[MX1][1],
                             start_tls=False, local_hostname="sender.test", timeout=5)
    await client.connect()
    await client.ehlo()
    offered = client.supports_extension("starttls")
    refused = await client.execute_command(b"STARTTLS")
    await client.quit()
    assert not offered and refused.code == 454
    message = Message.make("bob@example.test")
    attempt = await deliver_via_mx(env_for(pki, receiver), MX1, message, tls="opportunistic")
    assert attempt.delivered and not attempt.tls
    [stored] = receiver.find(message.token)
    assert (stored.tls, stored.tls_version, stored.cipher, stored.sni) == (False, None, None, None)


@pytest.mark.parametrize(("variant", "result", "failure"), [
    ("valid", "delivered", None),
    ("expired", "tls-failed", "certificate-expired"),
    ("wrong-name", "tls-failed", "certificate-host-mismatch"),
    ("untrusted", "tls-failed", "certificate-not-trusted"),
    ("self-signed", "tls-failed", "certificate-not-trusted"),
])
async def test_cert_variant_is_presented_and_a_verifying_client_judges_it(
        pki: PKI, receiver: Receiver, variant: str, result: str, failure: str | None) -> None:
    receiver.configure(ReceiverSpec(cert=variant))
    message = Message.make("bob@example.test")
    attempt = await deliver_via_mx(env_for(pki, receiver), MX1, message, tls="required",
                                   verify=True, timeout=5)
    assert (attempt.result, attempt.failure) == (result, failure)
    assert len(receiver.find(message.token)) == (1 if result == "delivered" else 0)


async def test_wrong_name_certificate_names_another_host(receiver: Receiver) -> None:
    receiver.configure(ReceiverSpec(cert="wrong-name"))
    _, _, names = await handshake(receiver.addresses[MX1], MX1)
    assert names == [WRONG_NAME]


async def test_each_mx_listener_presents_its_own_name(receiver: Receiver) -> None:
    assert receiver.addresses[MX1] != receiver.addresses[MX2]
    for host in (MX1, MX2):
        greeting, ehlo, names = await handshake(receiver.addresses[host], None)
        assert greeting.startswith(host) and ehlo[0] == host and names == [host]


@pytest.mark.parametrize(("listener", "sni", "presented"), [
    (MX1, MX1, MX1),
    (MX1, MX2, MX2),  # the identity follows SNI among the MX names
    (MX2, MX1, MX1),
    (MX1, "unknown.example.test", MX1),  # a name that is not an MX: the listener's own
])
async def test_sni_chooses_the_identity(receiver: Receiver, listener: str, sni: str,
                                        presented: str) -> None:
    _, _, names = await handshake(receiver.addresses[listener], sni)
    assert names == [presented]


async def test_auth_is_never_offered(receiver: Receiver) -> None:
    _, ehlo, _ = await handshake(receiver.addresses[MX1], MX1)
    assert "STARTTLS" not in ehlo and not any(line.upper().startswith("AUTH") for line in ehlo)


async def test_relaying_is_denied_and_nothing_is_stored(pki: PKI, receiver: Receiver) -> None:
    message = Message.make("eve@elsewhere.test")
    attempt = await deliver_via_mx(env_for(pki, receiver), MX1, message, tls="required",
                                   verify=True, timeout=5)
    assert attempt.result == "perm-fail"
    assert (attempt.code, attempt.text) == (550, "5.7.1 Relaying denied")
    assert receiver.messages == []
    ok = Message.make("bob@EXAMPLE.test")  # the accepted domain, in any case
    assert (await deliver_via_mx(env_for(pki, receiver), MX1, ok, timeout=5)).delivered


async def test_wait_idle_waits_for_every_open_session(receiver: Receiver) -> None:
    await asyncio.wait_for(receiver.wait_idle(), 5)  # nothing open: done at once
    reader, writer = await asyncio.open_connection(*receiver.addresses[MX1])
    assert (await reader.readline()).startswith(b"220 ")
    waiting = asyncio.ensure_future(receiver.wait_idle())
    await asyncio.sleep(0)  # let it start waiting: a session is open, so it must not be done
    assert not waiting.done()
    writer.close()
    await writer.wait_closed()
    await asyncio.wait_for(waiting, 5)  # the session ended with the connection


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.1", "::", "localhost"])
async def test_binding_outside_loopback_is_refused(pki: PKI, address: str) -> None:
    receiver = Receiver(pki, [MX1], {"example.test"}, bind_host=address)
    with pytest.raises(ServiceError):
        await receiver.start()
    await receiver.stop()  # never started: a no-op


async def test_unknown_certificate_variant_is_refused(receiver: Receiver) -> None:
    with pytest.raises(LabError, match="variant"):
        receiver.configure(ReceiverSpec(cert="bogus"))


async def test_stop_ends_open_sessions(pki: PKI) -> None:
    receiver = Receiver(pki, [MX1], {"example.test"})
    await receiver.start()
    host, port = receiver.addresses[MX1]
    reader, writer = await asyncio.open_connection(host, port)
    assert (await reader.readline()).startswith(b"220 " + MX1.encode())
    await receiver.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the receiver hung up
    writer.close()
    await writer.wait_closed()
    await receiver.stop()  # idempotent


async def test_stop_ends_a_session_inside_tls(pki: PKI) -> None:
    receiver = Receiver(pki, [MX1], {"example.test"})
    await receiver.start()
    host, port = receiver.addresses[MX1]
    client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                             local_hostname="sender.test", timeout=5)
    await client.connect()
    await client.starttls(server_hostname=MX1, tls_context=pki.client_context())
    await receiver.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.noop()
    client.close()
