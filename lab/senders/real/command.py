"""`command`: any program as the sender under test (DESIGN §5, issue 4).

The program comes from a template in DOWNGRADE_LAB_COMMAND, split like a shell command line
(no shell runs it), with `{sender}`, `{recipient}`, `{message_file}` and `{domain}` replaced in
every word, for example:

    DOWNGRADE_LAB_COMMAND='swaks --tls-optional --from {sender} --to {recipient} --data @{message_file}'

It runs inside the lab's namespace with the lab's facts as LAB_* variables (LAB_DNS,
LAB_DNS_PORT, LAB_CA_FILE, LAB_DOMAIN, LAB_HOSTS), SSL_CERT_FILE and NODE_EXTRA_CA_CERTS set to
the lab CA and proxy variables removed. A program cannot tell the lab what it decided, so the
verdict comes from the receiver's and the attacker's evidence: exit status 0 means "handed
over" (the lab then waits for the message until the step's deadline); any other status is a
deferral in the program's own words (its last line of output).
"""

from __future__ import annotations

import os
import shlex
import shutil

from ...errors import SenderError
from ..base import Message, SendReport, remaining
from ..env import LabEnv
from .base import OneShotSender, one_line, run

TEMPLATE_VAR = "DOWNGRADE_LAB_COMMAND"
PLACEHOLDERS = ("{sender}", "{recipient}", "{message_file}", "{domain}")


def template() -> list[str]:
    """The command template as words, or SenderError saying what is wrong with it."""
    raw = os.environ.get(TEMPLATE_VAR, "").strip()
    if not raw:
        raise SenderError(f"set {TEMPLATE_VAR} to a command template, e.g. "
                          "'swaks --from {sender} --to {recipient} --data @{message_file}'")
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        raise SenderError(f"{TEMPLATE_VAR}: cannot split {raw!r}: {exc}") from None
    if shutil.which(words[0]) is None and not os.access(words[0], os.X_OK):
        raise SenderError(f"{TEMPLATE_VAR}: program {words[0]!r} not found")
    return words


def expand(words: list[str], values: dict[str, str]) -> list[str]:
    """Replace the placeholders in every word (plain replacement: other braces stay)."""
    out = []
    for word in words:
        for key in PLACEHOLDERS:
            word = word.replace(key, values[key.strip("{}")])
        out.append(word)
    return out


class CommandSender(OneShotSender):
    """Any program, judged from the lab's evidence."""

    name = "command"
    capabilities: frozenset[str] = frozenset()

    @staticmethod
    def available() -> tuple[bool, str]:
        if not os.environ.get(TEMPLATE_VAR, "").strip():
            return False, f"{TEMPLATE_VAR} is not set (a command template: docs/senders.md)"
        try:
            template()
        except SenderError as exc:
            return False, str(exc)
        return True, ""

    async def start(self, env: LabEnv) -> None:
        self._template = template()  # read and checked once, not per message
        await self._open(env)

    async def send(self, message: Message, deadline: float) -> SendReport:
        body = self._message_file(message.data)
        values = {"sender": message.mail_from, "recipient": message.rcpt_to,
                  "message_file": str(body), "domain": message.rcpt_to.rpartition("@")[2]}
        cmd = expand(self._template, values)
        try:
            done = await run(cmd, env=self._environ, timeout_s=max(0.5, remaining(deadline)),
                             check=False, what="command")
        except SenderError as exc:
            return SendReport("unknown", str(exc), {"command": cmd})
        extra = {"command": cmd, "exit": done.code, "output": done.out[-2000:]}
        if done.code != 0:
            return SendReport("deferred", f"exit {done.code}: {one_line(done.out) or 'no output'}",
                              extra)
        return SendReport("unknown", f"handed over (exit 0): {one_line(done.out)}", extra)
