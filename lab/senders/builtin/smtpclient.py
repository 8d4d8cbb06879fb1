"""The delivery core of the built-in senders: one SMTP transaction with one MX host.

`deliver_via_mx()` connects to the lab's address for the MX, says EHLO, upgrades with STARTTLS
as the TLS mode asks, and sends MAIL FROM / RCPT TO / DATA. It returns a frozen `Attempt`
with what happened, the TLS facts and, for TLS failures, the RFC 8460 §4.3 result type the
reference sender reports via TLS-RPT. It never raises for anything the far side does.

TLS modes:
- `opportunistic`: STARTTLS when offered; a refused STARTTLS (4xx/5xx) continues in
  plaintext on the same connection, a failed handshake ends the attempt (`tls-failed`) and the
  caller decides whether to retry in plaintext.
- `required` (RFC 8461 §4.2, §5): STARTTLS is sent even when EHLO does not offer it, as strict
  senders do; if it is refused or the handshake or the certificate check fails, the client
  QUITs without ever sending MAIL FROM (A-01).
- `none`: never STARTTLS (plaintext fallback of opportunistic senders).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from typing import Any, Literal

import aiosmtplib
from msgspec import Struct
from msgspec.structs import asdict

from ...core.names import name_key
from ..base import Message
from ..env import LabEnv

TlsMode = Literal["opportunistic", "required", "none"]
# DANE (RFC 7672): the server's chain (DER, leaf first) -> None when it authenticates, else why
Authenticate = Callable[[list[bytes]], "str | None"]
Result = Literal["delivered", "temp-fail", "perm-fail", "tls-failed", "connect-failed"]
EHLO_NAME = "sender.test"
SMTP_PORT = 25
QUIT_TIMEOUT_S = 2.0

# OpenSSL verify codes -> RFC 8460 §4.3.2.2 result types. Invariant: every code not listed is
# reported as the general `validation-failure` (§4.3.2.3).
_CERT_FAILURES: dict[int, str] = {
    10: "certificate-expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    62: "certificate-host-mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    2: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18: "certificate-not-trusted",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "certificate-not-trusted",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "certificate-not-trusted",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
}


class Attempt(Struct, frozen=True):
    """One delivery attempt to one MX host, as the sender saw it."""

    mx: str
    result: Result
    ip: str | None = None  # the address dialled for the MX
    connected: bool = False
    starttls_offered: bool = False
    tls: bool = False  # the message (if sent) went inside TLS
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool = False  # TLS with the certificate checked against the lab CA and MX name
    code: int | None = None  # the last SMTP reply code that decided the result
    text: str = ""  # ... and its text, one line
    detail: str = ""  # one line saying what happened
    failure: str | None = None  # RFC 8460 result type for TLS failures, else None

    @property
    def delivered(self) -> bool:
        return self.result == "delivered"

    def summary(self) -> str:
        """`mx1.example.test: 250 2.0.0 OK queued as X over TLSv1.3` (or the failure)."""
        if self.delivered:
            how = f"over {self.tls_version}" if self.tls else "in plaintext"
            return f"{self.mx}: {self.code} {self.text} {how}"
        return f"{self.mx}: {self.result}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def client_context(env: LabEnv, verify: bool) -> ssl.SSLContext:
    """TLS 1.2+ client context: verifying against the lab CA only (no system roots, hostname
    checked, RFC 8461 §4.2 / C-01), or accepting any certificate. Built once per CA, not per
    connection; keyed by the bundle's bytes, so a new lab CA gets a new context."""
    return _client_context(env.ca_file.read_bytes() if verify else None)


@functools.lru_cache(maxsize=8)
def _client_context(ca_pem: bytes | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostname checked
    if ca_pem is not None:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))  # the lab CA, no system roots
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8461 §4.2 via RFC 7525
    return ctx


def _one_line(text: str) -> str:
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


class _Progress:
    """What we learnt so far; frozen into an `Attempt` when the attempt ends."""

    def __init__(self, mx: str) -> None:
        self.facts: dict[str, Any] = {"mx": mx}
        self.remarks: list[str] = []  # earlier events worth a word in `detail`

    def note(self, **facts: Any) -> None:
        self.facts.update(facts)

    def end(self, result: Result, detail: str, *, code: int | None = None, text: str = "",
            failure: str | None = None) -> Attempt:
        detail = "; ".join([*self.remarks, detail])
        return Attempt(**{**self.facts, "result": result, "detail": detail, "code": code,
                          "text": _one_line(text), "failure": failure})


def _tls_failure(exc: BaseException) -> tuple[str, str]:
    """(RFC 8460 result type, one-line detail) for a failed STARTTLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        failure = _CERT_FAILURES.get(exc.verify_code, "validation-failure")
        return failure, f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return "validation-failure", f"TLS handshake failed: {exc.reason or exc}"
    why = _one_line(str(exc)) or type(exc).__name__
    return "validation-failure", f"TLS handshake failed: {why}"


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Say goodbye politely; whatever the far side does, the connection ends here."""
    try:
        if client.is_connected:
            await client.quit(timeout=QUIT_TIMEOUT_S)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def peer_chain(sslobj: ssl.SSLObject) -> list[bytes]:
    """The certificates the server sent, leaf first, as DER (unverified: DANE checks them)."""
    public = getattr(sslobj, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return [bytes(c) for c in public()]
    inner = getattr(sslobj, "_sslobj", None)  # 3.10-3.12: the same method, not yet public
    if inner is not None and hasattr(inner, "get_unverified_chain"):
        return [c.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
                for c in inner.get_unverified_chain() or []]
    leaf = sslobj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


async def _starttls(client: aiosmtplib.SMTP, p: _Progress, ctx: ssl.SSLContext, mx: str,
                    mode: TlsMode, verify: bool,
                    authenticate: Authenticate | None = None) -> Attempt | None:
    """Upgrade to TLS. Returns an `Attempt` when the attempt ends here, None to go on."""
    if not client.supports_extension("starttls"):
        if mode != "required":
            return None
        # Strict senders try STARTTLS whether or not it is offered (DESIGN §4, strip-starttls);
        # aiosmtplib only sends it for an advertised extension, so we mark it advertised.
        client.esmtp_extensions["starttls"] = ""
    try:
        await client.starttls(server_hostname=mx, tls_context=ctx)  # SNI = MX name (F-10)
    except aiosmtplib.SMTPResponseException as exc:
        if mode == "opportunistic":
            p.remarks.append(f"STARTTLS refused: {exc.code} {_one_line(exc.message)}, "
                             "going on in plaintext")
            return None  # RFC 3207 §4: the client may go on without TLS
        await _quit(client)
        return p.end("tls-failed", f"STARTTLS refused: {exc.code} {_one_line(exc.message)}",
                     code=exc.code, text=exc.message, failure="starttls-not-supported")
    except (aiosmtplib.SMTPException, OSError) as exc:
        # The handshake failed (or the connection died in it): nothing left to QUIT on.
        client.close()
        failure, detail = _tls_failure(exc)
        return p.end("tls-failed", detail, failure=failure)
    sslobj = client.get_transport_info("ssl_object")
    cipher = sslobj.cipher() if isinstance(sslobj, ssl.SSLObject) else None
    p.note(tls=True, verified=verify,
           tls_version=sslobj.version() if isinstance(sslobj, ssl.SSLObject) else None,
           cipher=cipher[0] if cipher else None)
    if authenticate is not None and isinstance(sslobj, ssl.SSLObject):
        why = authenticate(peer_chain(sslobj))
        if why is not None:
            # RFC 7672 §2.2 (T-06): no match, no mail: QUIT before MAIL FROM
            await _quit(client)
            return p.end("tls-failed", f"DANE: {why}", failure="tlsa-invalid")
        p.note(verified=True)
    return None


async def _transaction(client: aiosmtplib.SMTP, p: _Progress, env: LabEnv, mx: str,
                       message: Message, mode: TlsMode, verify: bool,
                       authenticate: Authenticate | None = None) -> Attempt:
    try:
        await client.connect()
    except aiosmtplib.SMTPConnectResponseError as exc:
        # A refusing greeting (421/554) says "not here", never "never": try the next MX.
        await _quit(client)
        return p.end("temp-fail", f"greeting refused: {exc.code} {_one_line(exc.message)}",
                     code=exc.code, text=exc.message)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return p.end("connect-failed", f"cannot connect: {_one_line(str(exc))}")
    p.note(connected=True)
    try:
        await client.ehlo(hostname=EHLO_NAME)
        p.note(starttls_offered=client.supports_extension("starttls"))
        if mode != "none":
            ended = await _starttls(client, p, client_context(env, verify), mx, mode, verify,
                                    authenticate)
            if ended is not None:
                return ended
            if client.get_transport_info("ssl_object") is not None:
                await client.ehlo(hostname=EHLO_NAME)  # RFC 3207 §4.2: forget, ask again
        await client.mail(message.mail_from)
        await client.rcpt(message.rcpt_to)
        data = message.data if message.data.endswith(b"\r\n") else message.data + b"\r\n"
        reply = await client.data(data)
    except aiosmtplib.SMTPResponseException as exc:
        await _quit(client)
        result: Result = "perm-fail" if exc.code >= 500 else "temp-fail"
        return p.end(result, f"refused: {exc.code} {_one_line(exc.message)}", code=exc.code,
                     text=exc.message)
    except (aiosmtplib.SMTPException, OSError) as exc:
        client.close()
        return p.end("temp-fail", f"connection failed: {_one_line(str(exc)) or type(exc).__name__}")
    await _quit(client)
    return p.end("delivered", "delivered", code=reply.code, text=reply.message)


async def deliver_via_mx(env: LabEnv, mx_host: str, message: Message, *,
                         tls: TlsMode = "opportunistic", verify: bool = False,
                         timeout: float = 30.0,  # noqa: ASYNC109 - enforced inside
                         authenticate: Authenticate | None = None) -> Attempt:
    """Deliver `message` to MX `mx_host` at `env.address(mx_host, 25)` within `timeout` seconds
    (the whole attempt). Never raises for the far side's behaviour; see `Attempt.result`.
    `authenticate` (DANE): checks the server's chain after the handshake; a refusal ends the
    attempt before MAIL FROM."""
    mx = name_key(mx_host)
    host, port = env.address(mx, SMTP_PORT)
    p = _Progress(mx)
    p.note(ip=host)
    # start_tls=False: aiosmtplib 2+ would otherwise STARTTLS on connect by itself.
    client = aiosmtplib.SMTP(hostname=host, port=port, local_hostname=EHLO_NAME,
                             timeout=max(timeout, 0.001), start_tls=False)
    try:
        async with asyncio.timeout(timeout):
            return await _transaction(client, p, env, mx, message, tls, verify, authenticate)
    except TimeoutError:
        result: Result = "temp-fail" if p.facts.get("connected") else "connect-failed"
        return p.end(result, f"timed out after {timeout:.1f}s")
    finally:
        client.close()
