"""The load generator of the benchmarks, run as a child process by `_common.LoadClient`.

Reads one JSON job per line on stdin and answers one JSON line on stdout:

    {"port": 1234, "ca": "/tmp/.../lab-ca.pem", "mx": "mx1.example.test", "count": 500,
     "concurrency": 500, "size": 0, "tls": "required", "verify": true, "timeout": 120}
 -> {"elapsed": 1.23, "results": [{"token": ..., "sha256": ..., "result": "delivered",
                                   "tls": true, "detail": ...}, ...]}

Each message is one SMTP session (`deliver_via_mx`), the way the built-in senders deliver.
Messages are built before the clock starts; `elapsed` covers the deliveries only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import digest, message

from downgrade_lab.senders.base import Message
from downgrade_lab.senders.builtin.smtpclient import deliver_via_mx
from downgrade_lab.senders.env import LabEnv


async def job(spec: dict[str, Any]) -> dict[str, Any]:
    mx = spec["mx"]
    env = LabEnv(domain="example.test", dns_host="127.0.0.1", dns_port=53,
                 ca_file=Path(spec["ca"]), ports={mx: spec["port"]})
    messages = [message(spec.get("size", 0)) for _ in range(spec["count"])]
    gate = asyncio.Semaphore(spec.get("concurrency", spec["count"]))

    async def one(m: Message) -> dict[str, Any]:
        async with gate:
            a = await deliver_via_mx(env, mx, m, tls=spec.get("tls", "required"),
                                     verify=spec.get("verify", True),
                                     timeout=spec.get("timeout", 120.0))
        return {"token": m.token, "sha256": digest(m.data), "size": len(m.data),
                "result": a.result, "tls": a.tls, "detail": a.detail}

    started = time.perf_counter()
    results = await asyncio.gather(*(one(m) for m in messages))
    return {"elapsed": time.perf_counter() - started, "results": results}


async def main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        out = await job(json.loads(line))
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
