"""The one service shape (STYLE.md habit 4): `async start()`, idempotent `async stop()`,
`async with`, and `check()` re-raising any error recorded inside a handler."""

from __future__ import annotations

import ipaddress
import ssl
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ..core.names import name_key
from ..errors import ServiceError

if TYPE_CHECKING:
    import asyncio

    from ..harness.pki import PKI

# listen() backlog of the SMTP listeners (receiver, proxy). SMTP is server-speaks-first: when a
# burst of connections overflows the accept queue, Linux (with SYN cookies) drops the client's
# final ACK while the client already counts itself connected, and it then waits for a 220 that
# never comes. asyncio's default of 100 lost deliveries at 500 at once (bench/concurrency.py).
# The kernel caps it at net.core.somaxconn.
SMTP_BACKLOG = 1024


def require_lab_address(host: str) -> str:
    """Refuse to bind or connect anywhere but loopback (the lab never touches a real network).

    Addresses inside the lab's own network namespace are loopback there too (127/8 routes to
    `lo`), so this one rule covers both topologies."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ServiceError(f"not an IP address: {host!r} (the lab binds addresses, not names)") from None
    if not addr.is_loopback:
        raise ServiceError(f"refusing non-loopback address {host!r}: the lab stays on loopback")
    return host


def listening_address(server: asyncio.Server, who: str, host: str) -> tuple[str, int]:
    """The address a server just started by `create_server`/`start_server` listens on.

    asyncio skips an address whose `socket()` call fails instead of raising, so with no file
    descriptor left it returns a server listening nowhere: that is an error here, not an
    IndexError later. Such a server holds nothing; it is closed before raising."""
    if not server.sockets:
        server.close()
        raise ServiceError(f"{who}: could not listen on {host} (no socket; out of file "
                           "descriptors? see ulimit -n)")
    address, port = server.sockets[0].getsockname()[:2]
    return address, port


class Service:
    """Base class: subclasses implement `_start()` and `_stop()`; errors from handlers go
    through `record_error()` and come back out of `check()`."""

    name = "service"

    def __init__(self) -> None:
        self._started = False
        self._errors: list[BaseException] = []

    async def start(self) -> None:
        if self._started:
            return
        await self._start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._stop()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def record_error(self, exc: BaseException) -> None:
        self._errors.append(exc)

    def check(self) -> None:
        """Re-raise the first error a handler recorded (then forget them)."""
        if self._errors:
            first, self._errors = self._errors[0], []
            raise ServiceError(f"{self.name}: handler failed: {first!r}") from first

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class HttpsHost(Service):
    """Base of the lab's HTTPS hosts (policy host, TLS-RPT collector): one lab domain,
    certificates from the lab PKI, a bind address and port (0: ephemeral, read back after
    `start()`), and the SNI each TLS connection sent, kept only while the connection lives."""

    def __init__(self, pki: PKI, domain: str, *, bind_host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__()
        self.pki = pki
        self.domain = name_key(domain)
        self.bind_host = bind_host
        self.port = port
        self._sni: weakref.WeakKeyDictionary[ssl.SSLObject, str | None]
        self._sni = weakref.WeakKeyDictionary()

    def _server_context(self, host: str, *, chain: bool = True) -> ssl.SSLContext:
        """A TLS server context of our own presenting the lab certificate of `host`, with
        `_on_hello` as its SNI callback. `chain=False`: no certificate of its own, for an
        `_on_hello` that always sets the connection's context (or aborts the handshake), which
        saves loading a chain per lab. Reading the files fails when file descriptors run out."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            if chain:
                ctx.load_cert_chain(*self.pki.cert_files(host))
        except OSError as exc:
            raise ServiceError(f"{self.name}: cannot load the certificate of {host}: {exc}") from exc
        ctx.sni_callback = self._on_hello
        return ctx

    def _on_hello(self, conn: ssl.SSLObject, server_name: str | None,
                  ctx: ssl.SSLContext) -> int | None:
        """SNI callback: record the name asked for; the one certificate answers it."""
        self._sni[conn] = server_name
        return None
