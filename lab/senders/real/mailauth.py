"""`mailauth`: the Node MTA-STS implementation used by ZoneMTA (DESIGN §5, issue 4).

ZoneMTA itself needs MongoDB and Redis (REAL-SENDERS.md), so the lab drives its delivery
path directly: `mailauth-send.mjs` (shipped in lab/senders/real/node/, installed with its npm
packages into the per-user data folder's `node/` by `downgrade-lab setup-senders`, where Node
finds them) uses npm `mx-connect` (MX resolution,
MTA-STS through `mailauth`, MX filtering) and nodemailer's SMTP connection, turning an
enforce policy into required, verified TLS as ZoneMTA does. One Node process per message; the
policy cache is a JSON file in the scenario's folder, so steps share it and every scenario
starts cold. The verdict is the script's own JSON line: delivered, or the error it gave up with
(deferred unless the error is permanent).
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from ..base import Message, SendReport, remaining
from ..env import LabEnv
from .base import OneShotSender, SenderTimeout, one_line, run
from .datadir import NODE_SOURCE, data_dir

SCRIPT_NAME = "mailauth-send.mjs"
PACKAGES = ("mx-connect", "mailauth", "nodemailer")
STATES = frozenset({"delivered", "deferred", "bounced"})


def node_dir() -> Path:
    """The installed driver's folder: the script next to its node_modules."""
    return data_dir() / "node"


@functools.cache
def node_binary() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


class MailauthSender(OneShotSender):
    """mx-connect + mailauth + nodemailer, enforce as required verified TLS."""

    name = "mailauth"
    capabilities: frozenset[str] = frozenset({"mta-sts"})

    @staticmethod
    def available() -> tuple[bool, str]:
        if node_binary() is None:
            return False, "node not found: install Node.js (apt-get install nodejs npm)"
        folder = node_dir()
        missing = [p for p in PACKAGES if not (folder / "node_modules" / p).is_dir()]
        if missing:
            return False, (f"npm packages {', '.join(missing)} missing in {folder}: "
                           "downgrade-lab setup-senders")
        installed, shipped = folder / SCRIPT_NAME, NODE_SOURCE / SCRIPT_NAME
        if not installed.is_file() or installed.read_bytes() != shipped.read_bytes():
            return False, (f"{installed} is missing or older than this lab's: "
                           "downgrade-lab setup-senders")
        return True, ""

    async def start(self, env: LabEnv) -> None:
        await self._open(env, {"NODE_NO_WARNINGS": "1"})

    async def send(self, message: Message, deadline: float) -> SendReport:
        body = self._message_file(message.data)
        assert self._dir is not None
        try:
            done = await run([node_binary() or "node", str(node_dir() / SCRIPT_NAME),
                              "--from", message.mail_from, "--to", message.rcpt_to, "--message", str(body),
                              "--cache", str(self._dir / "policy-cache.json")],
                             env=self._environ, timeout_s=max(1.0, remaining(deadline)),
                             check=False, what="mailauth")
        except SenderTimeout as exc:
            return SendReport("unknown", f"{exc} (killed at the step's deadline)")
        lines = [line for line in done.out.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            return SendReport("unknown", f"mailauth-send.mjs (exit {done.code}): "
                              f"{one_line(done.out) or 'no output'}")
        state = result.pop("state", "unknown")
        detail = str(result.pop("detail", ""))
        return SendReport(state if state in STATES else "unknown", detail, result)
