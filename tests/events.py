"""Waiting for events instead of the clock (STYLE habit 4): a line a process prints, a process
it starts, the sockets a process holds. Every wait is bounded and says what it waited for."""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

POLL_S = 0.02  # between two looks at /proc: the event itself is what ends the wait


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(POLL_S)


class Lines:
    """The lines of a text stream (a child's stdout or stderr), read by a thread of their own
    so a test can wait for one line and still collect everything up to EOF afterwards."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._eof = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:  # closed at EOF, as communicate() would
            for line in stream:
                self._queue.put(line)
        self._queue.put(None)

    def _take(self, timeout: float) -> str | None:
        line = self._queue.get(timeout=timeout)
        if line is None:
            self._eof = True
        else:
            self.seen.append(line)
        return line

    def wait_for(self, wanted: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first line from now on for which `wanted(line)` holds."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            try:
                line = self._take(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is not None and wanted(line):
                return line
        raise AssertionError(f"no {what} within {timeout:g} s; the stream said: {''.join(self.seen)!r}")

    def rest(self, timeout: float) -> str:
        """Everything the stream said, once it has ended."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            self._take(max(0.0, deadline - time.monotonic()))
        return "".join(self.seen)


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (children, grandchildren, ...), read from /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, p in parent.items() if p in frontier]
        found += frontier
    return found


def argv_of(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def wait_for_process(pid: int, argv: list[str], timeout: float = 20) -> int:
    """Wait until a process below `pid` runs `argv` (exec'd, so its signal handling is its own);
    returns its pid."""
    found: list[int] = []

    def running() -> bool:
        found[:] = [p for p in descendants(pid) if argv_of(p) == argv]
        return bool(found)

    wait_until(running, timeout, f"a process below {pid} running {argv}")
    return found[0]


@dataclass(frozen=True)
class InetSocket:
    proto: str  # tcp | udp (either family)
    host: str
    port: int


def _socket_inodes(pid: int | str) -> set[int]:
    inodes = set()
    fds = Path("/proc") / str(pid) / "fd"
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    """`0100007F:1F90` -> ("127.0.0.1", 8080): the kernel prints 32-bit words in host order."""
    host, port = hex_address.split(":")
    raw = b"".join(struct.pack("=I", int(host[i:i + 8], 16)) for i in range(0, len(host), 8))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), int(port, 16)


def inet_sockets(pid: int | str = "self") -> dict[int, InetSocket]:
    """The TCP and UDP sockets (IPv4 and IPv6) process `pid` holds, by inode, with the address
    each is bound to: what the kernel says, whatever the code believes it asked for."""
    mine = _socket_inodes(pid)
    found = {}
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        try:
            table = (Path("/proc") / str(pid) / "net" / proto).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in table:
            fields = row.split()
            inode = int(fields[9])
            if inode in mine:
                host, port = _address(fields[1])
                found[inode] = InetSocket(proto.rstrip("6"), host, port)
    return found
