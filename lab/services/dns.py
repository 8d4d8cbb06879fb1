"""The lab's DNS server (DESIGN §2, §3): a thin shell over the pure zone in lab/core/dnszone.py.

`DnsServer` moves bytes over UDP and TCP on one port, answers from the `Zone` of the current
step (`set_zone`) and records every query, malformed packets included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from typing import Any, cast

from msgspec import Struct

from ..core.dnsserve import answers_for
from ..core.dnszone import ATTACKER_MX, Zone, answer, build_zone
from ..errors import ServiceError
from .base import Service, listening_address, require_lab_address

__all__ = ["ATTACKER_MX", "DnsQuery", "DnsServer", "Zone", "answer", "build_zone"]

BIND_ATTEMPTS = 5


class DnsQuery(Struct, frozen=True):
    """One query the lab's DNS saw. `rcode` is the rcode sent, `TIMEOUT` when a fault kept the
    lab silent, or `DROPPED` for a packet not worth an answer (too broken, or a response)."""

    time: float  # Unix time it arrived
    transport: str  # udp | tcp
    qname: str
    qtype: str
    rcode: str
    answers: tuple[str, ...] = ()  # the answer section, one zone-file line per record
    note: str = ""  # what was odd: a malformed packet, an answer truncated for UDP
    client: str = ""  # host:port of the asker
    authority: tuple[str, ...] = ()  # the authority section; signed (DANE) zones only


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not a DatagramTransport subclass on every Python (3.11's selector transport is not).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        out = self._server.respond(data, "udp", f"{addr[0]}:{addr[1]}")
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


class DnsServer(Service):
    """The lab's DNS over UDP and TCP on one port (`port` after `start()`).

    Serves `zone` (swap it between steps with `set_zone`) and records every query; read and
    clear the log with `take_queries()`."""

    name = "dns"

    def __init__(self, zone: Zone | None = None, *, bind_host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__()
        self.bind_host = bind_host
        self.port = port
        self.zone = zone or Zone()
        self._queries: list[DnsQuery] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one per TCP connection
        self._writers: set[asyncio.StreamWriter] = set()
        self._answering = self.zone  # the zone `_answers` were taken for
        self._answers = answers_for(self.zone)  # serve(), remembered for the zone

    def set_zone(self, zone: Zone) -> None:
        self.zone = zone

    def take_queries(self) -> list[DnsQuery]:
        """Every query since the last call, oldest first; clears the log."""
        out, self._queries = self._queries, []
        return out

    async def _start(self) -> None:
        host = require_lab_address(self.bind_host)
        loop = asyncio.get_running_loop()
        for attempt in range(BIND_ATTEMPTS):
            # TCP first: the kernel's port 0 skips ports that TIME_WAIT connections still hold,
            # an explicit bind does not. Thousands of short SMTP and DNS connections (a matrix,
            # a load test) leave thousands of those; UDP keeps no such state, so the UDP twin of
            # a TCP port is nearly always free. (UDP first lost 1 lab in 80 after a load test.)
            try:
                tcp = await asyncio.start_server(self._serve_tcp, host, self.port)
            except OSError as exc:
                raise ServiceError(f"dns: cannot bind TCP {host}:{self.port}: {exc}") from exc
            port = listening_address(tcp, "dns", host)[1]
            try:
                udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self),
                                                             local_addr=(host, port))
            except OSError as exc:
                tcp.close()
                await tcp.wait_closed()
                # Port 0 gave a TCP port whose UDP twin is taken: draw again.
                if self.port or exc.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS - 1:
                    raise ServiceError(f"dns: cannot bind UDP {host}:{port}: {exc}") from exc
                continue
            self._tcp, self._udp, self.port = tcp, udp, port
            return

    async def _stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.transport.abort()  # wakes every handler: its next read ends
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 7766 §6.2.1: several length-prefixed queries may share one connection.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else ""
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                out = self.respond(await reader.readexactly(size), "tcp", client)
                if out is not None:
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the asker hung up, possibly mid-message
        except asyncio.CancelledError:
            # stop() cancels us; ending quietly here because Python 3.11's start_server logs
            # a cancelled handler task as an error.
            pass
        except Exception as exc:  # a bug of ours: keep serving, let check() tell
            self.record_error(exc)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def respond(self, data: bytes, transport: str, client: str = "") -> bytes | None:
        """Bytes to send back for the packet `data` (None: send nothing), recording the query.
        What to answer, FORMERR or nothing is lab/core/dnsserve.py's `serve()`, through
        `Answers`, which keeps what it made of each packet for the zone (`answers_for`: for
        every equal zone of the process)."""
        arrived = time.time()
        if self._answering is not self.zone:
            self._answering = self.zone
            self._answers = answers_for(self.zone)
        try:
            served = self._answers.serve(data, transport)
        except Exception as exc:  # a bug of ours: stay silent, let check() tell
            self.record_error(exc)
            return None
        self._queries.append(DnsQuery(arrived, transport, served.qname, served.qtype, served.rcode,
                                      answers=served.answers, note=served.note, client=client,
                                      authority=served.authority))
        return served.out
