"""The on-path attacker (DESIGN §2, §3): a TCP proxy between the sender and the genuine receiver.

A thin shell around `lab.smtp.Relay`, which makes every decision; this module only moves bytes
and carries out the relay's commands. It opens one listening socket per MX host, so it knows
which MX the sender dialled (in the loopback topology every MX name resolves to 127.0.0.1 and
the port tells them apart), and forwards only to the lab's own receivers.

Per connection two read loops (sender side, receiver side) feed one relay. A per-connection
lock serialises them, so commands run in the relay's order; TLS upgrades (intercept-tls) run
inside it, so no bytes are read in between. Writes are drained outside the lock so one slow
side never stalls the other.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping, Sequence
from functools import cache, partial
from typing import Any

from msgspec import Struct

from ..core.model import Attack
from ..core.names import name_key
from ..core.smtp import (
    TRANSFORMS,
    CloseBoth,
    Command,
    Entry,
    Relay,
    SendToClient,
    SendToServer,
    StartPassthrough,
    StartTLSWithClient,
    StartTLSWithServer,
)
from ..errors import ServiceError
from ..harness.pki import PKI
from .base import SMTP_BACKLOG, Service, listening_address, require_lab_address

READ_SIZE = 64 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
# Wire capture for the pcap export: references to chunks already in hand (no copy), kept up to
# this many bytes per connection; past it capture stops, so a stream never has a hole.
MAX_WIRE = 1024 * 1024
WIRE_DIRECTIONS = ("sender->attacker", "attacker->sender", "attacker->receiver",
                   "receiver->attacker")


class WireChunk(Struct, frozen=True):
    """Bytes that crossed one of the attacker's sockets: `time` (time.time()), `direction`
    (one of WIRE_DIRECTIONS). Inside TLS the attacker terminated they are the plaintext it
    read or wrote (asyncio decrypts below the proxy); in passthrough the raw TLS bytes."""

    time: float
    direction: str
    data: bytes


class ConnectionRecord(Struct, frozen=True):
    """What the attacker saw of one connection since the previous `take_records()`.

    `client_plaintext` holds what the sender said readably (in the clear, or inside TLS the
    attacker terminated), at most `lab.smtp.MAX_PLAINTEXT` bytes per connection; the
    passthrough counts are raw (TLS) bytes copied without reading. `live`: still open when
    taken (later activity comes in the next call); `continued`: an earlier call returned the
    start of this connection. `error` says why it ended abnormally (the lab's fault or not).
    `wire`: the chunks that crossed the proxy's sockets since the last take, in order, for the
    pcap export (at most MAX_WIRE bytes per connection; `wire_truncated` once past it)."""

    mx: str
    started: float  # time.time() when the sender connected
    attacks: tuple[str, ...]
    transcript: tuple[Entry, ...]
    saw_mail_from: bool
    client_plaintext: bytes
    passthrough_to_receiver: int
    passthrough_to_sender: int
    error: str | None
    live: bool
    continued: bool
    wire: tuple[WireChunk, ...] = ()
    wire_truncated: bool = False  # capture stopped at MAX_WIRE bytes

    def to_json(self) -> dict[str, Any]:
        return {"mx": self.mx, "started": self.started, "attacks": list(self.attacks),
                "transcript": [e.to_json() for e in self.transcript],
                "saw_mail_from": self.saw_mail_from,
                "client_plaintext": self.client_plaintext.decode("utf-8", "replace"),
                "passthrough_to_receiver": self.passthrough_to_receiver,
                "passthrough_to_sender": self.passthrough_to_sender,
                "error": self.error, "live": self.live, "continued": self.continued}


class _Conn:
    """The live state of one proxied connection, and how much of it was already taken."""

    def __init__(self, mx: str, relay: Relay, client: asyncio.StreamWriter, *,
                 capture: bool = False) -> None:
        self.mx = mx
        self.capturing = capture  # keep the wire bytes (only for the pcap export)
        self.relay = relay
        self.started = time.time()
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.passthrough = False
        self.closed = False
        self.finished = False
        self.error: str | None = None
        self.to_receiver = 0
        self.to_sender = 0
        self.wire: list[WireChunk] = []
        self.wire_size = 0
        self.wire_truncated = False
        # cursors: how much earlier take_records() calls returned
        self._entries = self._plain = self._mail_from = self._up = self._down = self._wire = 0
        self._taken = self._error_taken = False

    def capture(self, direction: str, data: bytes) -> None:
        """Keep `data` for the pcap export, within MAX_WIRE bytes per connection; nothing
        (not even a timestamp) when the proxy does not capture."""
        if not self.capturing or self.wire_truncated or not data:
            return
        if self.wire_size + len(data) > MAX_WIRE:
            self.wire_truncated = True
            return
        self.wire.append(WireChunk(time.time(), direction, data))
        self.wire_size += len(data)

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client] + ([self.server] if self.server is not None else [])

    def has_news(self) -> bool:
        relay = self.relay
        return (not self._taken or self.finished or len(relay.transcript) > self._entries
                or relay.client_bytes > self._plain or self.to_receiver > self._up
                or self.to_sender > self._down or len(self.wire) > self._wire)

    def take(self) -> ConnectionRecord:
        """A frozen snapshot of what happened since the last take; advances the cursors."""
        relay = self.relay
        plain = relay.client_plaintext
        error = None if self._error_taken else self.error
        record = ConnectionRecord(
            mx=self.mx, started=self.started, attacks=tuple(a.describe() for a in relay.attacks),
            transcript=tuple(relay.transcript[self._entries:]),
            saw_mail_from=relay.mail_from_count > self._mail_from,
            client_plaintext=plain[self._plain:],
            passthrough_to_receiver=self.to_receiver - self._up,
            passthrough_to_sender=self.to_sender - self._down,
            error=error, live=not self.finished, continued=self._taken,
            wire=tuple(self.wire[self._wire:]), wire_truncated=self.wire_truncated)
        self._entries, self._plain, self._wire = len(relay.transcript), len(plain), len(self.wire)
        self._mail_from = relay.mail_from_count
        self._up, self._down = self.to_receiver, self.to_sender
        self._taken, self._error_taken = True, self._error_taken or error is not None
        return record


class MitmProxy(Service):
    """The attacker's proxy: `ports[mx]` is where a sender dialling `mx` must connect."""

    name = "mitm"

    def __init__(self, upstreams: Mapping[str, tuple[str, int]], *, bind_host: str = "127.0.0.1",
                 pki: PKI | None = None,
                 listen: Mapping[str, tuple[str, int]] | None = None,
                 capture: bool = False) -> None:
        super().__init__()
        self.capture = capture  # keep each connection's wire bytes (`run --pcap`)
        self.bind_host = require_lab_address(bind_host)
        # Per MX host, where its listener binds: the isolated topology puts each on its own
        # address and the real port 25. Hosts not named bind `bind_host` on an ephemeral port.
        self.listen = {name_key(h): (require_lab_address(a), p)
                       for h, (a, p) in (listen or {}).items()}
        self.upstreams: dict[str, tuple[str, int]] = {}
        for host, (address, port) in upstreams.items():
            # the attacker relays only to the lab's own receivers, never out
            require_lab_address(address)
            if not 0 < port < 65536:
                raise ServiceError(f"mitm: bad upstream port {port!r} for {host!r}")
            self.upstreams[name_key(host)] = (address, port)
        self.pki = pki  # needed only for intercept-tls
        self.ports: dict[str, int] = {}
        self._attacks: tuple[Attack, ...] = ()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: list[_Conn] = []
        self._stopping = False

    def set_attacks(self, attacks: Sequence[Attack]) -> None:
        """The attacks for connections opened from now on (others act elsewhere: ignored)."""
        chosen = tuple(a for a in attacks if a.layer == "proxy")
        for attack in chosen:
            if attack.kind not in TRANSFORMS:
                raise ServiceError(f"mitm: no transform for proxy attack {attack.kind!r}")
            if TRANSFORMS[attack.kind].intercept and self.pki is None:
                raise ServiceError("mitm: intercept-tls needs the lab PKI (MitmProxy(pki=...))")
        self._attacks = chosen

    def take_records(self) -> list[ConnectionRecord]:
        """What happened since the last call, one record per connection: finished ones are
        then forgotten; live ones are snapshots, and their later activity comes next time."""
        records = [conn.take() for conn in self._conns if conn.has_news()]
        self._conns = [conn for conn in self._conns if not conn.finished]
        return records

    async def wait_idle(self) -> None:
        """Wait until every connection open now has ended (callers bound it with a timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))  # asyncio.wait: cancelling us cancels no handler

    async def _start(self) -> None:
        self._stopping = False
        try:
            for host in self.upstreams:
                address, port = self.listen.get(host, (self.bind_host, 0))
                try:
                    server = await asyncio.start_server(partial(self._accept, host), address, port,
                                                        backlog=SMTP_BACKLOG)
                except OSError as exc:
                    raise ServiceError(f"mitm: cannot listen on {address}:{port}: {exc}") from exc
                self._servers.append(server)
                self.ports[host] = listening_address(server, "mitm", address)[1]
        except ServiceError:
            await self._stop()
            raise

    async def _stop(self) -> None:
        self._stopping = True
        for server in self._servers:
            server.close()
        for conn in self._conns:  # abort first: nothing left to flush, and no waiting on peers
            for writer in conn.writers():
                writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.ports.clear()

    def _accept(self, host: str, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            writer.transport.abort()
            return
        relay = Relay([a for a in self._attacks if a.applies_to(host)], mx_host=host)
        conn = _Conn(host, relay, writer, capture=self.capture)
        self._conns.append(conn)
        task = asyncio.create_task(self._handle(conn, reader), name=f"mitm {host}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: _Conn, client: asyncio.StreamReader) -> None:
        try:
            address, port = self.upstreams[conn.mx]
            try:
                upstream, conn.server = await asyncio.open_connection(address, port)
            except OSError as exc:
                # a receiver that is down or refuses is a fact of the world, not a lab error
                conn.error = f"upstream {address}:{port} unreachable: {exc}"
                conn.relay.upstream_unreachable(str(exc))
                return
            await self._pump(conn, client, upstream)
        except Exception as exc:  # a bug in the lab: recorded, re-raised by check()
            conn.error = f"lab error: {exc!r}"
            self.record_error(exc)
        finally:
            conn.closed = True
            for writer in conn.writers():
                await _close(writer)
            conn.finished = True

    async def _pump(self, conn: _Conn, client: asyncio.StreamReader,
                    upstream: asyncio.StreamReader) -> None:
        """Run both read loops until either sees the connection closed, then stop the other:
        it may wait for an EOF that a failed TLS handshake never delivers."""
        loops = [asyncio.create_task(self._read_loop(conn, client, from_client=True)),
                 asyncio.create_task(self._read_loop(conn, upstream, from_client=False))]
        try:
            await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in loops:
                task.cancel()
            results = await asyncio.gather(*loops, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _read_loop(self, conn: _Conn, reader: asyncio.StreamReader, *,
                         from_client: bool) -> None:
        relay = conn.relay
        while not conn.closed:
            try:
                data = await reader.read(READ_SIZE)
            except OSError:
                data = b""  # a reset is an end like any other
            conn.capture("sender->attacker" if from_client else "receiver->attacker", data)
            written: list[asyncio.StreamWriter] = []
            async with conn.lock:
                if conn.closed:
                    return
                if conn.passthrough:
                    commands: list[Command] = [_raw_other(from_client, data)] if data else []
                    if not data:
                        commands += relay.client_eof() if from_client else relay.server_eof()
                elif from_client:
                    commands = relay.receive_client(data) if data else relay.client_eof()
                else:
                    commands = relay.receive_server(data) if data else relay.server_eof()
                await self._execute(conn, commands, written)
            for writer in written:
                try:
                    await writer.drain()
                except OSError:
                    self._close_both(conn)

    async def _execute(self, conn: _Conn, commands: list[Command],
                       written: list[asyncio.StreamWriter]) -> None:
        for command in commands:
            if isinstance(command, SendToClient | SendToServer):
                writer = conn.client if isinstance(command, SendToClient) else conn.server
                assert writer is not None
                if command.raw:
                    if isinstance(command, SendToClient):
                        conn.to_sender += len(command.data)
                    else:
                        conn.to_receiver += len(command.data)
                if not writer.is_closing():
                    conn.capture("attacker->sender" if writer is conn.client
                                 else "attacker->receiver", command.data)
                    writer.write(command.data)
                    if writer not in written:
                        written.append(writer)
            elif isinstance(command, StartPassthrough):
                conn.passthrough = True
            elif isinstance(command, CloseBoth):
                self._close_both(conn)
            elif isinstance(command, StartTLSWithServer | StartTLSWithClient):
                failed = await self._upgrade(conn, command)
                if failed:
                    await self._execute(conn, failed, written)
                    return

    async def _upgrade(self, conn: _Conn, command: StartTLSWithServer | StartTLSWithClient
                       ) -> list[Command]:
        """Run one TLS handshake for intercept-tls; a failure is evidence, not a lab error."""
        try:
            if isinstance(command, StartTLSWithServer):
                assert conn.server is not None
                await conn.server.start_tls(_attacker_client_context(),
                                            server_hostname=command.server_hostname,
                                            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
            else:
                assert self.pki is not None  # set_attacks() refused intercept-tls without it
                context = self.pki.server_context(command.host, command.cert)
                await conn.client.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except OSError as exc:  # ssl.SSLError, resets and TimeoutError are all OSErrors
            side = "receiver" if isinstance(command, StartTLSWithServer) else "sender"
            return conn.relay.tls_failed(side, str(exc) or type(exc).__name__)
        return []

    @staticmethod
    def _close_both(conn: _Conn) -> None:
        # Writes already queued still go out; _pump then stops the other read loop.
        conn.closed = True
        for writer in conn.writers():
            writer.close()


def _raw_other(from_client: bool, data: bytes) -> Command:
    return SendToServer(data, raw=True) if from_client else SendToClient(data, raw=True)


@cache
def _attacker_client_context() -> ssl.SSLContext:
    """The attacker does not care who the receiver is: it verifies nothing (and so loads no
    trust store: the system's costs about 20 ms)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait; a peer that never finishes a TLS shutdown gets aborted."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
        return
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
    except (OSError, TimeoutError):
        pass
