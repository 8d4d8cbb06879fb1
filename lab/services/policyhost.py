"""HTTPS policy host of the lab (DESIGN §2): `https://mta-sts.D/.well-known/mta-sts.txt`.

What is served, which certificate answers and how `block-policy-fetch` takes a connection are
decided in lab/core/policyserve.py; `PolicyHost` moves bytes and records what it saw: every
TLS handshake (with the SNI the client sent, F-10) and every HTTP request.

Every connection is accepted as plain TCP and tracked from the start (so `configure()` and
`stop()` can close even one stuck in its TLS handshake); the mode in force when it arrives
decides its fate. `block-policy-fetch`:
- `refused`: nothing listens. A bound, never-listening "holder" socket keeps the port for the
  whole life of the service (Linux lets it share the port with the listener through
  SO_REUSEADDR as long as it does not listen), so the kernel answers SYN with RST and the
  port is still ours when the listener comes back. Refused connections leave no record.
- `reset`: accept, then close with SO_LINGER 0 so the kernel sends RST before any TLS.
- `timeout`: accept and never answer.
Otherwise TLS starts with `loop.start_tls` and aiohttp's low-level server takes over. The
listening socket is made synchronously in `configure()`, so no fetch is refused once it
returns (connections wait in the kernel's backlog until the event loop adopts the socket).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Coroutine, Sequence
from functools import partial
from typing import Any

from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse
from aiohttp.web_server import Server
from msgspec import Struct

from ..core.model import Attack, PolicySpec
from ..core.policyserve import (
    SERVE,
    WELL_KNOWN,
    Reply,
    certificate,
    fetch_mode,
    route,
    trickles,
)
from ..errors import ServiceError
from ..harness.pki import PKI
from .base import HttpsHost, require_lab_address

__all__ = ["WELL_KNOWN", "Handshake", "PolicyHost", "PolicyRequest", "Reply", "route"]

SHUTDOWN_GRACE_S = 0.1  # how long stop() lets a handler finish before cancelling it
BACKLOG = 128
HANDSHAKE_TIMEOUT_S = 60.0  # a client that stalls inside the TLS handshake is dropped then


class PolicyRequest(Struct, frozen=True):
    """One request (or, with `blocked`, one connection the block attack swallowed)."""

    time: float  # Unix time it arrived
    sni: str | None  # the server name the client sent; None if none (or no TLS got that far)
    method: str
    path: str  # as sent, query included
    status: int  # status served; 0: no HTTP answer at all
    host: str | None = None  # Host header
    user_agent: str | None = None
    blocked: str = ""  # reset | timeout when block-policy-fetch took the connection


class Handshake(Struct, frozen=True):
    """One TLS ClientHello seen: which name was asked for and which certificate answered.
    A handshake with no request after it usually means the client rejected the certificate."""

    time: float
    sni: str | None
    identity: str  # the name the presented certificate is for (before the variant's twist)
    cert: str  # the variant presented: valid | expired | wrong-name | untrusted | self-signed


class _Conn(asyncio.Protocol):
    """One accepted TCP connection, handled as the mode in force says."""

    def __init__(self, host: PolicyHost) -> None:
        self._host = host

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        host, how = self._host, self._host._mode
        host._track(transport)
        if how == SERVE:
            transport.pause_reading()  # the ClientHello waits for the TLS layer
            host._spawn(host._upgrade(transport))
            return
        host._requests.append(PolicyRequest(time.time(), None, "", "", 0, blocked=how))
        if how != "timeout":
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()  # linger 0: the close is an RST, not a FIN

    def data_received(self, data: bytes) -> None:
        pass  # timeout: swallow the ClientHello and stay silent


class PolicyHost(HttpsHost):
    """The policy host for `domain`, HTTPS with certificates from `pki`, on `port` after
    `start()`. Set what it serves with `configure()` between steps; read and clear its logs
    with `take_requests()` and `take_handshakes()`."""

    name = "policyhost"

    def __init__(self, pki: PKI, domain: str, *, bind_host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(pki, domain, bind_host=bind_host, port=port)
        self._policy: PolicySpec | None = None
        self._mode = SERVE  # serve | refused | reset | timeout (policyserve.MODES)
        self._trickle_s = 0.0
        self._requests: list[PolicyRequest] = []
        self._handshakes: list[Handshake] = []
        self._conns: set[asyncio.Transport] = set()  # every accepted TCP connection
        self._tasks: set[asyncio.Task[None]] = set()  # TLS upgrades under way
        self._http: Server | None = None
        self._tls: ssl.SSLContext | None = None
        self._holder: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._pending: socket.socket | None = None  # listening, not yet adopted by the loop
        self._adopter: asyncio.Task[None] | None = None
        self._closed: list[asyncio.Server] = []

    @property
    def policy_host(self) -> str:
        """The default identity: `mta-sts.D` (RFC 8461 §3.3, F-02)."""
        return f"mta-sts.{self.domain}"

    def configure(self, policy: PolicySpec | None, attacks: Sequence[Attack] = (), *,
                  trickle_s: float = 0.0) -> None:
        """Serve `policy` (None: 404 everywhere) under the policy-layer `attacks`, with the body
        sent one byte every `trickle_s` seconds when that is above 0 (F-06). Connections open
        from an earlier step are closed so the new setting holds for every later fetch."""
        mode = fetch_mode(attacks)
        self._policy, self._mode, self._trickle_s = policy, mode, trickle_s
        if self._holder is not None:
            self._switch()

    def take_requests(self) -> list[PolicyRequest]:
        """Every request since the last call, oldest first; clears the log."""
        out, self._requests = self._requests, []
        return out

    def take_handshakes(self) -> list[Handshake]:
        """Every TLS handshake since the last call, oldest first; clears the log."""
        out, self._handshakes = self._handshakes, []
        return out

    # -- life cycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        host = require_lab_address(self.bind_host)
        tls = self._server_context(self.policy_host, chain=False)  # _on_hello picks the chain
        self._http = Server(self._handle, access_log=None)  # take_requests() is the log
        self._tls = tls
        self._holder = self._socket(host, self.port)
        self.port = self._holder.getsockname()[1]
        try:
            self._switch()
            if self._adopter is not None:
                await self._adopter
        except BaseException:
            await self._stop()
            raise

    async def _stop(self) -> None:
        if self._adopter is not None:
            self._adopter.cancel()
            await asyncio.gather(self._adopter, return_exceptions=True)
            self._adopter = None
        self._unlisten()
        self._drop_connections()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.shutdown(SHUTDOWN_GRACE_S)
            self._http = None
        for server in self._closed:
            await server.wait_closed()
        self._closed.clear()
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def _socket(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors
            raise ServiceError(f"policyhost: cannot open a socket for {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ServiceError(f"policyhost: cannot bind {host}:{port}: {exc}") from exc
        return sock

    def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            self._closed.append(self._server)
            self._server = None
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def _drop_connections(self) -> None:
        for transport in list(self._conns):
            transport.abort()
        self._conns.clear()

    def _switch(self) -> None:
        """Apply the configured mode now: fresh connections only, a listener unless refused."""
        self._drop_connections()
        if self._mode == "refused":
            self._unlisten()  # only the holder is bound: the kernel refuses every SYN
            return
        if self._server is not None or self._pending is not None:
            return
        sock = self._socket(self.bind_host, self.port)
        try:
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            raise ServiceError(f"policyhost: cannot listen on port {self.port}: {exc}") from exc
        self._pending = sock
        if self._adopter is None or self._adopter.done():
            self._adopter = asyncio.get_running_loop().create_task(self._adopt())

    async def _adopt(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending is not None:
            sock, self._pending = self._pending, None
            try:
                server = await loop.create_server(partial(_Conn, self), sock=sock,
                                                  start_serving=False)
            except Exception as exc:
                sock.close()
                self.record_error(exc)
                return
            # No await between creating and publishing the server: a configure() during
            # start_serving() below finds it and closes it.
            self._server = server
            await server.start_serving()

    # -- connections ------------------------------------------------------------------------

    def _on_hello(self, conn: ssl.SSLObject, server_name: str | None,
                  ctx: ssl.SSLContext) -> int | None:
        """SNI callback: present the certificate for the name asked for (the default identity
        when none or a non-host name was sent), in the configured variant, and record it."""
        try:
            identity, variant = certificate(server_name, self._policy, self.policy_host)
            conn.context = self.pki.server_context(identity, variant)
            self._sni[conn] = server_name
            self._handshakes.append(Handshake(time.time(), server_name, identity, variant))
        except Exception as exc:  # raising here would only reach sys.unraisablehook
            self.record_error(exc)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    def _track(self, transport: asyncio.Transport) -> None:
        # A TLS connection's raw transport reports its end to the TLS layer, not to us:
        # forget the closed ones here.
        self._conns = {t for t in self._conns if not t.is_closing()}
        self._conns.add(transport)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        assert self._http is not None and self._tls is not None
        app = self._http()
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(transport, app, self._tls, server_side=True,
                                       ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except OSError:  # ssl.SSLError and TimeoutError are OSErrors
            transport.abort()  # a client that rejects the certificate ends here (F-02)
            return
        except Exception as exc:  # a bug of ours: drop the connection, let check() tell
            transport.abort()
            self.record_error(exc)
            return
        if tls is None:  # start_tls gives None only if the transport is closing
            transport.abort()
            return
        app.connection_made(tls)

    async def _handle(self, request: BaseRequest) -> StreamResponse:
        policy, trickle_s = self._policy, self._trickle_s
        try:
            reply = route(policy, request.method, request.path)
            conn = request.transport.get_extra_info("ssl_object") if request.transport else None
            self._requests.append(PolicyRequest(
                time=time.time(), sni=self._sni.get(conn) if conn is not None else None,
                method=request.method, path=request.raw_path, status=reply.status,
                host=request.headers.get("Host"), user_agent=request.headers.get("User-Agent")))
        except Exception as exc:
            self.record_error(exc)
            raise
        if policy is not None and policy.delay_s > 0:
            await asyncio.sleep(policy.delay_s)  # the configured slowness, not a readiness wait
        if trickles(trickle_s, reply, request.method):
            return await self._trickle(request, reply, trickle_s)
        return Response(status=reply.status, body=reply.body, headers=reply.headers)

    async def _trickle(self, request: BaseRequest, reply: Reply,
                       trickle_s: float) -> StreamResponse:
        # RFC 8461 §3.3 (F-06): a body that creeps in must end in a fetch failure, never in a
        # policy built from what arrived so far.
        response = StreamResponse(status=reply.status, headers=reply.headers)
        response.content_length = len(reply.body)
        await response.prepare(request)
        try:
            for i in range(len(reply.body)):
                await response.write(reply.body[i:i + 1])
                await asyncio.sleep(trickle_s)
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up, as it should
        return response
