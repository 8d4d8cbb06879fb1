"""Postfix's own view of a delivery, read from its `maillog_file`. Pure: lines in, facts out.

The lines the adapter relies on (Postfix 3.7, `smtp_tls_loglevel = 1`):
    postfix/cleanup[214]: D8A6D214125: message-id=<abc@x>
    postfix/smtp[217]: Verified TLS connection established to mx1.example.test[127.0.1.1]:25: ...
    postfix/smtp[217]: D8A6D214125: to=<bob@example.test>, relay=..., status=deferred (reason)
A status line from the `error`/`retry` service saying "delivery temporarily suspended" is
qmgr's memory of earlier failures to that destination, not an attempt: stale state.
"""

from __future__ import annotations

import re

from msgspec import Struct

_MESSAGE_ID = re.compile(r"postfix/cleanup\[\d+\]: (?P<qid>[0-9A-Za-z]+): message-id=<?(?P<mid>[^>\s]*)>?")
_STATUS = re.compile(r"postfix/(?P<svc>[\w/-]+)\[(?P<pid>\d+)\]: (?P<qid>[0-9A-Za-z]+): "
                     r"to=<(?P<rcpt>[^>]*)>,(?P<rest>.*?) status=(?P<status>[\w-]+) \((?P<reason>.*)\)$")
_TLS = re.compile(r"postfix/(?P<svc>[\w/-]+)\[(?P<pid>\d+)\]: (?P<level>Verified|Trusted|Untrusted|"
                  r"Anonymous) TLS connection established to (?P<peer>\S+?):? (?P<rest>.*)$")
_RELAY = re.compile(r"relay=(?P<relay>[^,]+)")
# Postfix's status word -> the SendReport state. Invariant: every value is a SenderState.
STATES = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced",
          "expired": "bounced", "undeliverable": "bounced"}
STALE = "delivery temporarily suspended"


class Status(Struct, frozen=True):
    queue_id: str
    state: str  # delivered | deferred | bounced
    reason: str  # Postfix's own words, e.g. "TLS is required, but was not offered by host ..."
    relay: str
    tls: tuple[str, ...]  # "Verified TLS connection established to ..." of the same process

    @property
    def stale(self) -> bool:
        return self.state == "deferred" and self.reason.startswith(STALE)

    def summary(self) -> str:
        tls = f"; {self.tls[-1]}" if self.tls else "; no TLS"
        return f"{self.reason} (relay={self.relay}{tls if self.state != 'bounced' else ''})"


def queue_id(lines: list[str], message_id: str) -> str | None:
    """The queue id cleanup gave the message with `message_id`."""
    for line in lines:
        m = _MESSAGE_ID.search(line)
        if m and m.group("mid") == message_id:
            return m.group("qid")
    return None


def statuses(lines: list[str], qid: str) -> list[Status]:
    """Every delivery status logged for queue id `qid`, oldest first, with the TLS lines the
    same process logged before it."""
    tls_by_pid: dict[str, list[str]] = {}
    out: list[Status] = []
    for line in lines:
        t = _TLS.search(line)
        if t:
            text = f"{t.group('level')} TLS to {t.group('peer')}: {t.group('rest')}"
            tls_by_pid.setdefault(t.group("pid"), []).append(text)
            continue
        m = _STATUS.search(line)
        if not m or m.group("qid") != qid:
            continue
        relay = _RELAY.search(m.group("rest"))
        out.append(Status(queue_id=qid, state=STATES.get(m.group("status"), "deferred"),
                          reason=m.group("reason"), relay=relay.group("relay") if relay else "",
                          tls=tuple(tls_by_pid.pop(m.group("pid"), []))))
    return out
