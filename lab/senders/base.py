"""The sender-under-test protocol (DESIGN §5) and the values it trades with the lab."""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal, Protocol, runtime_checkable

from msgspec import Struct, field

from .env import LabEnv

SenderState = Literal["delivered", "deferred", "bounced", "unknown"]


class Message(Struct, frozen=True):
    """One message to deliver. `token` is unique and appears only in the headers and body, so
    whoever reads the token has read the message (the envelope carries no token)."""

    token: str
    mail_from: str
    rcpt_to: str
    data: bytes

    @classmethod
    def make(cls, rcpt_to: str, headers: tuple[tuple[str, str], ...] = (),
             mail_from: str = "alice@sender.test") -> Message:
        """A new probe message to `rcpt_to` with a fresh token and Message-ID (CRLF lines)."""
        token = "DGLTOKEN" + uuid.uuid4().hex
        fields = (("From", mail_from), ("To", rcpt_to), ("Subject", f"Downgrade Lab probe {token}"),
                  ("Date", formatdate(localtime=False)),
                  ("Message-ID", make_msgid(domain="sender.test")), *headers)
        body = f"Confidential: the secret token is {token}.\n"
        return cls(token=token, mail_from=mail_from, rcpt_to=rcpt_to, data=_compose(fields, body))


def _compose(fields: tuple[tuple[str, str], ...], body: str) -> bytes:
    """The message as `EmailMessage` + `set_content` writes it with CRLF lines, written
    directly when every field is short printable ASCII (the email package's header objects
    cost about 4 ms a message, a tenth of a step); otherwise through the email package, which
    encodes and folds."""
    if all(value.isascii() and value.isprintable() and value == value.strip() != ""
           and len(name) + len(value) < 76
           for name, value in fields):
        head = "".join(f"{name}: {value}\r\n" for name, value in fields)
        return (head + 'Content-Type: text/plain; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n"
                + body.replace("\n", "\r\n")).encode("ascii")
    msg = EmailMessage()
    for name, value in fields:
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


class SendReport(Struct, frozen=True):
    """The sender's own view of one delivery attempt: `state`, its own words in `detail`
    (the run record's `sender_report.detail`) and anything else worth keeping in `extra`
    (JSON-serialisable; merged into `sender_report`)."""

    state: SenderState
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, **self.extra}


@runtime_checkable
class Sender(Protocol):
    """A sender under test (DESIGN §5). One instance per scenario: `start` once, `send` once
    per step (the steps share the sender's state, e.g. its MTA-STS cache), `stop` at the end,
    also after a failure (make it idempotent). A sender lacking a capability a scenario needs
    is SKIP there, not FAIL: "mta-sts", "tls-rpt", "clock" (`advance_clock(seconds)`),
    "queue-state" (it can tell a deferral from a bounce), "dane"."""

    name: str
    capabilities: frozenset[str]  # e.g. {"mta-sts", "tls-rpt", "clock", "queue-state"}

    async def start(self, env: LabEnv) -> None:
        """Get ready for the lab described by `env` (write configuration, start daemons)."""
        ...

    async def send(self, message: Message, deadline: float) -> SendReport:
        """Deliver `message` as the sender would; return its own view by `deadline` (a
        `time.monotonic()` value). A final state (delivered, deferred, bounced) ends the lab's
        wait at once; "unknown" makes the lab wait on its evidence until the deadline."""
        ...

    async def stop(self) -> None:
        """Stop everything `start` started and remove what it wrote."""
        ...


def remaining(deadline: float) -> float:
    """Seconds left until `deadline` (a `time.monotonic()` value), never negative."""
    return max(0.0, deadline - time.monotonic())
