"""What the benchmark scripts share: medians and ratios, a typical scenario, a bare aiosmtpd
receiver (the floor), and a load generator in its own process (bench/_load.py).

Not a module of the lab: the scripts run as `.venv/bin/python bench/NAME.py`, which puts this
folder first on sys.path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from downgrade_lab.core.model import Scenario
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.harness.pki import PKI
from downgrade_lab.senders.base import Message

ROOT = Path(__file__).resolve().parent.parent
TYPICAL = ROOT / "scenarios" / "baseline" / "enforce-healthy.toml"
MX = "mx1.example.test"
RCPT = "bob@example.test"


def typical() -> Scenario:
    """The scenario the per-step figures use: an enforce policy on an honest path."""
    return load_scenario(TYPICAL, "baseline/enforce-healthy")


def machine() -> str:
    return (f"{os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], unit: str = "ms") -> str:
    """`median (min / max)` in ms, or in the unit given with the values already scaled."""
    if unit == "ms":
        return f"{med(values) * 1000:.1f} ms ({min(values) * 1000:.1f} / {max(values) * 1000:.1f})"
    return f"{med(values):.1f} {unit} ({min(values):.1f} / {max(values):.1f})"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def message(size: int = 0) -> Message:
    """A probe message padded with 78-byte body lines to about `size` bytes, ending in CRLF,
    so the receiver stores exactly `data`."""
    base = Message.make(RCPT)
    line = b"x" * 76 + b"\r\n"
    pad = line * max(0, (size - len(base.data)) // len(line))
    return Message(base.token, base.mail_from, base.rcpt_to, base.data + pad)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Count:
    def __init__(self) -> None:
        self.stored = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.stored += 1
        return "250 2.0.0 OK"


async def bare_receiver(pki: PKI) -> tuple[asyncio.Server, int, _Count]:
    """A plain aiosmtpd STARTTLS receiver for MX with the lab certificate: no lab around it."""
    loop = asyncio.get_running_loop()
    ctx = pki.server_context(MX)
    counter = _Count()
    server = await loop.create_server(
        lambda: SMTP(counter, hostname=MX, tls_context=ctx, loop=loop), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], counter


class LoadClient:
    """bench/_load.py in a child process: the sender's CPU is not the measured process's.
    `run()` sends one job (a JSON object) and returns its JSON result."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @classmethod
    async def spawn(cls) -> LoadClient:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("_load.py")),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024)
        return cls(proc)

    async def run(self, job: dict[str, Any], limit_s: float = 600.0) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(job).encode() + b"\n")
        await self._proc.stdin.drain()
        line = await asyncio.wait_for(self._proc.stdout.readline(), limit_s)
        if not line:
            raise RuntimeError("the load generator died")
        result: dict[str, Any] = json.loads(line)
        return result

    async def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
