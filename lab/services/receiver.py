"""The genuine MX (DESIGN §2): an aiosmtpd SMTP receiver that stores every message it accepts
together with the TLS facts of the session that carried it.

aiosmtpd's `SMTP` protocol is served in the lab's own event loop with `loop.create_server`
(not the threaded `Controller`): one loop, no threads, and stop() can cancel every session.
There is one listener per MX host name, so each listener knows the identity it serves (its
greeting, its default certificate, the `mx` of what it stores).

TLS facts (aiosmtpd 1.4.6): after STARTTLS aiosmtpd builds a *new* `Session` and sets
`session.ssl` to the SSL transport's extra-info dict (`ssl_object`, `cipher`, `peercert`,
`compression`); before STARTTLS `session.ssl` is None. Version and cipher come from
`session.ssl["ssl_object"]`. The SNI the client sent is visible only to the context's
`sni_callback`, which we also use to pick the certificate, so we remember it per SSL object.

The receiver never relays and makes no outbound connection at all: a recipient outside
`domains` gets `550 5.7.1 Relaying denied`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException
from msgspec import Struct

from ..core.model import ReceiverSpec
from ..core.names import name_key
from ..errors import ServiceError
from ..harness.pki import PKI
from .base import SMTP_BACKLOG, Service, listening_address, require_lab_address

# aiosmtpd logs every odd command a sender (or the attacker) sends at WARNING; in the lab that is
# evidence for the run record, not noise for the terminal.
logging.getLogger("mail.log").addHandler(logging.NullHandler())
logging.getLogger("mail.log").propagate = False

IDENT = "ESMTP Downgrade Lab receiver"
IDLE_TIMEOUT_S = 60.0  # a sender that goes quiet is dropped; lab steps last seconds


class StoredMessage(Struct, frozen=True):
    """One message the receiver accepted (stored before its 250 was sent)."""

    mx: str  # the MX host name of the listener that took it
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool  # inside a TLS session this receiver terminated itself
    tls_version: str | None  # e.g. "TLSv1.3"
    cipher: str | None  # e.g. "TLS_AES_256_GCM_SHA384"
    sni: str | None  # server name the client sent in its ClientHello, if any
    peer: str  # "ip:port" of the connecting side (the proxy, in the lab)
    time: float  # Unix time it was stored
    queue_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "mx": self.mx,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "data": self.data.decode("utf-8", "replace"),
            "size": len(self.data),
            "tls": self.tls,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "sni": self.sni,
            "peer": self.peer,
            "time": self.time,
            "queue_id": self.queue_id,
        }


class _Session(SMTP):
    """aiosmtpd's protocol, registered with its receiver so stop() can end it."""

    def __init__(self, receiver: Receiver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._receiver = receiver
        self._raw: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._raw is None
        super().connection_made(transport)
        # Called twice per STARTTLS session: first with the TCP transport, then with the SSL
        # one. Keep the first: aborting it ends the TLS layer on top as well.
        if first:
            self._raw = transport
            self._receiver._track(self, self._handler_coroutine)

    def connection_lost(self, error: Exception | None) -> None:
        self._receiver._sessions.discard(self)
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection now (stop() then awaits the session task)."""
        if isinstance(self._raw, asyncio.WriteTransport):
            self._raw.abort()


class _Handler:
    """aiosmtpd hooks for one listener (one MX identity)."""

    def __init__(self, receiver: Receiver, mx: str) -> None:
        self._receiver = receiver
        self._mx = mx

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        # An MX takes no AUTH; aiosmtpd would offer its always-failing LOGIN/PLAIN after TLS.
        session.host_name = hostname  # the 5-argument hook must set it itself
        return [r for r in responses if not r[4:].upper().startswith("AUTH")]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        domain = name_key(address.rpartition("@")[2])
        if domain not in self._receiver.domains:
            return "550 5.7.1 Relaying denied"  # never an open relay
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        queue_id = uuid.uuid4().hex[:12].upper()
        message = self._receiver._stored(self._mx, session, envelope, queue_id)
        # Store first: whatever the sender saw as 250 is in `messages`.
        self._receiver.messages.append(message)
        return f"250 2.0.0 OK queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client refused our certificate or broke the handshake: a fact of the
            # scenario (aiosmtpd closes the connection), not a lab failure.
            return "454 4.7.0 TLS handshake failed"
        self._receiver.record_error(error)
        return "451 4.3.0 Receiver error"


# aiosmtpd reads the EHLO hook's signature at every connection (its 4- or 5-argument form):
# worked out once here, it is looked up instead (inspect.signature takes `__signature__`).
_Handler.handle_EHLO.__signature__ = inspect.signature(_Handler.handle_EHLO)  # type: ignore[attr-defined]


class Receiver(Service):
    """The genuine MX for `hosts`, accepting mail for `domains` only.

    After `start()`, `addresses[host]` is where the listener for MX `host` is. `configure()`
    changes STARTTLS and the certificate variant between steps; new connections see it."""

    name = "receiver"

    def __init__(self, pki: PKI, hosts: Sequence[str], domains: Collection[str], *,
                 bind_host: str = "127.0.0.1") -> None:
        super().__init__()
        if not hosts:
            raise ServiceError("receiver: needs at least one MX host name")
        self.pki = pki
        self.hosts = tuple(dict.fromkeys(name_key(h) for h in hosts))
        self.domains = frozenset(name_key(d) for d in domains)
        self.bind_host = bind_host
        self.spec = ReceiverSpec()
        self.addresses: dict[str, tuple[str, int]] = {}
        self.messages: list[StoredMessage] = []
        self._servers: list[asyncio.Server] = []
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # aiosmtpd's per-connection tasks

    # -- configuration and records --

    def configure(self, spec: ReceiverSpec) -> None:
        """STARTTLS on/off and the certificate variant, for connections made from now on."""
        self.pki.cert_files(self.hosts[0], spec.cert)  # validates the variant early
        self.spec = spec

    def take_messages(self) -> list[StoredMessage]:
        """Every message stored since the last call, oldest first; clears the store."""
        out, self.messages = self.messages, []
        return out

    def find(self, token: str) -> list[StoredMessage]:
        """Stored messages whose data carry `token` (not cleared)."""
        needle = token.encode()
        return [m for m in self.messages if needle in m.data]

    async def wait_idle(self) -> None:
        """Wait until every session open now has ended, as the proxy's `wait_idle()` does
        (callers bound it with a timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))  # asyncio.wait: cancelling us cancels no session

    # -- TLS --

    def _context(self, host: str, variant: str) -> ssl.SSLContext:
        """The server context for `host` in `variant`, shared through the PKI by every lab with
        the same MX hosts: a client that names another of our MX hosts in its SNI gets that
        host's genuine identity, in the variant its connection started with."""
        return self.pki.listener_context(host, variant, self.hosts)

    def _stored(self, mx: str, session: Session, envelope: Envelope,
                queue_id: str) -> StoredMessage:
        tls = session.ssl is not None
        sslobj = session.ssl.get("ssl_object") if session.ssl is not None else None
        version = cipher = sni = None
        if isinstance(sslobj, ssl.SSLObject):
            version = sslobj.version()
            suite = sslobj.cipher()
            cipher = suite[0] if suite else None
            sni = self.pki.sni_of(sslobj)
        peer = session.peer
        data = envelope.original_content or b""
        return StoredMessage(
            mx=mx, mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(data), tls=tls, tls_version=version, cipher=cipher, sni=sni,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            time=time.time(), queue_id=queue_id,
        )

    # -- lifecycle --

    def _track(self, session: _Session, task: asyncio.Task[None] | None) -> None:
        self._sessions.add(session)
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _factory(self, host: str) -> SMTP:
        spec = self.spec  # fixed per connection: configure() affects new connections only
        return _Session(
            self,
            handler=_Handler(self, host),
            hostname=host,
            ident=IDENT,
            tls_context=self._context(host, spec.cert) if spec.starttls else None,
            require_starttls=False,  # senders decide; the scenarios test exactly that
            decode_data=False,  # keep the bytes as sent
            enable_SMTPUTF8=False,
            auth_require_tls=True,
            timeout=IDLE_TIMEOUT_S,
            loop=asyncio.get_running_loop(),
        )

    async def _start(self) -> None:
        host = require_lab_address(self.bind_host)
        loop = asyncio.get_running_loop()
        try:
            for mx in self.hosts:
                server = await loop.create_server(functools.partial(self._factory, mx), host, 0,
                                                  backlog=SMTP_BACKLOG)
                self._servers.append(server)
                self.addresses[mx] = listening_address(server, "receiver", host)
        except OSError as exc:
            await self._stop()
            raise ServiceError(f"receiver: cannot bind {host}: {exc}") from exc
        except ServiceError:
            await self._stop()
            raise

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            session.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._sessions.clear()
        self.addresses.clear()
