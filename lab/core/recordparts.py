"""What the services recorded during a step, as typed parts of the run record (DESIGN §6).

Each part is a frozen value with `to_json()` (exactly the keys docs/run-record.md lists, in
that order) and `from_json()`, which reads tolerantly: a missing key takes its default, so a
record written by an older minor version (or a hand-made one in a test) still loads. Pure: no
I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

# A JSON value (str, number, bool, None, list, object): the parts of the record whose shape
# is open by design (a sender adapter's extras, a decoded TLS report).
JSON = Any
JSONObject = Mapping[str, Any]


# ---- tolerant readers: a missing or null value gives the default ----

def text(d: JSONObject, key: str, default: str = "") -> str:
    v = d.get(key)
    return default if v is None else str(v)


def maybe_text(d: JSONObject, key: str) -> str | None:
    v = d.get(key)
    return None if v is None else str(v)


def flag(d: JSONObject, key: str) -> bool:
    return bool(d.get(key))


def number(d: JSONObject, key: str) -> float:
    v = d.get(key)
    return v if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def count(d: JSONObject, key: str) -> int:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def maybe_count(d: JSONObject, key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def texts(d: JSONObject, key: str) -> tuple[str, ...]:
    v = d.get(key)
    return tuple(str(x) for x in v) if isinstance(v, list | tuple) else ()


def objects(d: JSONObject, key: str) -> list[JSONObject]:
    v = d.get(key)
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, list | tuple) else []


@dataclass(frozen=True)
class Received:
    """A message the genuine receiver stored (`received[k]`, `other_mail[k]`)."""

    mx: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: str  # decoded as UTF-8, U+FFFD for what is not
    size: int  # bytes as stored
    tls: bool  # inside a TLS session this receiver terminated itself
    tls_version: str | None
    cipher: str | None
    sni: str | None
    peer: str
    time: float
    queue_id: str

    def to_json(self) -> dict[str, Any]:
        return {"mx": self.mx, "mail_from": self.mail_from, "rcpt_tos": list(self.rcpt_tos),
                "data": self.data, "size": self.size, "tls": self.tls,
                "tls_version": self.tls_version, "cipher": self.cipher, "sni": self.sni,
                "peer": self.peer, "time": self.time, "queue_id": self.queue_id}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "mx"), text(d, "mail_from"), texts(d, "rcpt_tos"), text(d, "data"),
                   count(d, "size"), flag(d, "tls"), maybe_text(d, "tls_version"),
                   maybe_text(d, "cipher"), maybe_text(d, "sni"), text(d, "peer"),
                   number(d, "time"), text(d, "queue_id"))


@dataclass(frozen=True)
class DnsQuery:
    """One query the lab's DNS answered (`dns_queries[k]`)."""

    time: float
    transport: str  # udp | tcp
    qname: str
    qtype: str
    rcode: str  # NOERROR, NXDOMAIN, ..., TIMEOUT, DROPPED
    answers: tuple[str, ...]
    note: str
    client: str

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "transport": self.transport, "qname": self.qname,
                "qtype": self.qtype, "rcode": self.rcode, "answers": list(self.answers),
                "note": self.note, "client": self.client}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(number(d, "time"), text(d, "transport"), text(d, "qname"), text(d, "qtype"),
                   text(d, "rcode"), texts(d, "answers"), text(d, "note"), text(d, "client"))


@dataclass(frozen=True)
class PolicyFetch:
    """One request (or blocked connection) at the MTA-STS policy host (`policy_fetches[k]`)."""

    time: float
    sni: str | None
    method: str
    path: str
    status: int  # 0: no HTTP answer at all
    host: str | None
    user_agent: str | None
    blocked: str  # reset | timeout | ""

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "sni": self.sni, "method": self.method, "path": self.path,
                "status": self.status, "host": self.host, "user_agent": self.user_agent,
                "blocked": self.blocked}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(number(d, "time"), maybe_text(d, "sni"), text(d, "method"), text(d, "path"),
                   count(d, "status"), maybe_text(d, "host"), maybe_text(d, "user_agent"),
                   text(d, "blocked"))


@dataclass(frozen=True)
class WireChunk:
    """Bytes that crossed one of the attacker's sockets (`--pcap` runs only)."""

    time: float
    direction: str  # sender->attacker | attacker->sender | attacker->receiver | receiver->attacker
    data: str  # base64

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "direction": self.direction, "data": self.data}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(number(d, "time"), text(d, "direction"), text(d, "data"))


@dataclass(frozen=True)
class Connection:
    """One SMTP connection through the attacker's proxy (`connections[k]`)."""

    mx: str
    started: float
    attacks: tuple[str, ...]
    saw_mail_from: bool
    passthrough_to_receiver: int
    passthrough_to_sender: int
    error: str | None
    live: bool
    continued: bool
    attacker_read: str
    attacker_read_bytes: int
    wire: tuple[WireChunk, ...] | None = None  # None: not captured (the key is absent)
    wire_truncated: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mx": self.mx, "started": self.started, "attacks": list(self.attacks),
            "saw_mail_from": self.saw_mail_from,
            "passthrough_to_receiver": self.passthrough_to_receiver,
            "passthrough_to_sender": self.passthrough_to_sender, "error": self.error,
            "live": self.live, "continued": self.continued, "attacker_read": self.attacker_read,
            "attacker_read_bytes": self.attacker_read_bytes}
        if self.wire is not None:
            out["wire"] = [w.to_json() for w in self.wire]
        if self.wire_truncated is not None:
            out["wire_truncated"] = self.wire_truncated
        return out

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        wire = d.get("wire")
        truncated = d.get("wire_truncated")
        return cls(text(d, "mx"), number(d, "started"), texts(d, "attacks"),
                   flag(d, "saw_mail_from"), count(d, "passthrough_to_receiver"),
                   count(d, "passthrough_to_sender"), maybe_text(d, "error"), flag(d, "live"),
                   flag(d, "continued"), text(d, "attacker_read"), count(d, "attacker_read_bytes"),
                   tuple(WireChunk.from_json(w) for w in objects(d, "wire"))
                   if isinstance(wire, list) else None,
                   None if truncated is None else bool(truncated))


@dataclass(frozen=True)
class TranscriptEntry:
    """One line of the SMTP dialogue as the proxy relayed (and changed) it (`transcript[k]`)."""

    kind: str  # command | reply | data | event
    direction: str  # sender->receiver | receiver->sender | "" (an event)
    said: str
    heard: str | None  # None: the attacker kept it
    changed: bool
    origin: str  # sender | receiver | attacker | proxy
    attack: str | None
    tls: bool  # inside TLS the attacker terminated
    mx: str
    connection: int  # index into the step's connections

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "direction": self.direction, "said": self.said,
                "heard": self.heard, "changed": self.changed, "origin": self.origin,
                "attack": self.attack, "tls": self.tls, "mx": self.mx,
                "connection": self.connection}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "kind"), text(d, "direction"), text(d, "said"),
                   maybe_text(d, "heard"), flag(d, "changed"), text(d, "origin"),
                   maybe_text(d, "attack"), flag(d, "tls"), text(d, "mx"),
                   count(d, "connection"))


# The keys of a TLS report every channel has, before and after the channel's own.
_REPORT_HEAD = ("channel", "valid", "time", "size", "media_type")
_REPORT_TAIL = ("report", "error", "problems")


@dataclass(frozen=True)
class TlsReport:
    """One TLS report (RFC 8460) that reached the lab (`tlsrpt_reports[k]`). `details` holds
    the channel's own keys in order: sni/path/status (https), the envelope, transport and
    RFC 8460 §5.3 headers (mail)."""

    channel: str  # https | mail
    valid: bool
    time: float
    size: int
    media_type: str | None
    details: Mapping[str, JSON]
    report: JSON  # the decoded RFC 8460 §4 JSON, or None
    error: str | None
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "valid": self.valid, "time": self.time,
                "size": self.size, "media_type": self.media_type, **self.details,
                "report": self.report, "error": self.error, "problems": list(self.problems)}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        details = {k: v for k, v in d.items() if k not in _REPORT_HEAD + _REPORT_TAIL}
        return cls(text(d, "channel"), flag(d, "valid"), number(d, "time"), count(d, "size"),
                   maybe_text(d, "media_type"), details, d.get("report"), maybe_text(d, "error"),
                   texts(d, "problems"))

