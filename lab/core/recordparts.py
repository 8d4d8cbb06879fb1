"""What the services recorded during a step, as typed parts of the run record (DESIGN §6).

Each part is a frozen value with `to_json()` (exactly the keys docs/run-record.md lists, in
that order) and `from_json()`, which reads tolerantly: a missing key takes its default, so a
record written by an older minor version (or a hand-made one in a test) still loads. Pure: no
I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from msgspec import Struct

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


class Received(Struct, frozen=True):
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


class DnsQuery(Struct, frozen=True):
    """One query the lab's DNS answered (`dns_queries[k]`)."""

    time: float
    transport: str  # udp | tcp
    qname: str
    qtype: str
    rcode: str  # NOERROR, NXDOMAIN, ..., TIMEOUT, DROPPED
    answers: tuple[str, ...]
    note: str
    client: str
    authority: tuple[str, ...] = ()  # optional (1.1): signed zones' authority section

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time, "transport": self.transport, "qname": self.qname,
            "qtype": self.qtype, "rcode": self.rcode, "answers": list(self.answers),
            "note": self.note, "client": self.client}
        if self.authority:
            out["authority"] = list(self.authority)
        return out

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(number(d, "time"), text(d, "transport"), text(d, "qname"), text(d, "qtype"),
                   text(d, "rcode"), texts(d, "answers"), text(d, "note"), text(d, "client"),
                   texts(d, "authority"))


class PolicyFetch(Struct, frozen=True):
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


class WireChunk(Struct, frozen=True):
    """Bytes that crossed one of the attacker's sockets (`--pcap` runs only)."""

    time: float
    direction: str  # sender->attacker | attacker->sender | attacker->receiver | receiver->attacker
    data: str  # base64

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "direction": self.direction, "data": self.data}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(number(d, "time"), text(d, "direction"), text(d, "data"))


class Connection(Struct, frozen=True):
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


class TranscriptEntry(Struct, frozen=True):
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


class TlsReport(Struct, frozen=True):
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



# ---- the DNSSEC evidence of a DANE step (`dane`, schema 1.1; lab/core/daneevidence.py) ----

class TlsaEntry(Struct, frozen=True):
    """One TLSA record of an MX host (`dane.published[k]`, `dane.forged[k]`)."""

    host: str
    usage: int
    selector: int
    mtype: int
    data: str  # the certificate association data, hex

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data}"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "usage": self.usage, "selector": self.selector,
                "mtype": self.mtype, "data": self.data}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "host"), count(d, "usage"), count(d, "selector"), count(d, "mtype"),
                   text(d, "data"))


class ZoneKeyTag(Struct, frozen=True):
    """The key tag of a lab zone's genuine key (`dane.keys[k]`): what its RRSIGs must name."""

    zone: str
    key_tag: int

    def to_json(self) -> dict[str, Any]:
        return {"zone": self.zone, "key_tag": self.key_tag}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "zone"), count(d, "key_tag"))


class Tampering(Struct, frozen=True):
    """What one DNS-layer DANE attack did to the signed data (`dane.tampering[k]`). `name`:
    the owner name, or `*.zone` for every name of a zone; `rtype`: the type, `*` for all."""

    attack: str
    name: str
    rtype: str
    what: str

    def to_json(self) -> dict[str, Any]:
        return {"attack": self.attack, "name": self.name, "rtype": self.rtype, "what": self.what}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "attack"), text(d, "name"), text(d, "rtype"), text(d, "what"))


class ShownCert(Struct, frozen=True):
    """The certificate one connection's TLS handshake showed the sender (`dane.certificates[k]`),
    and how it compares with the TLSA records the domain published."""

    connection: int  # index into the step's connections
    mx: str
    presented_by: str  # receiver | attacker
    variant: str  # the lab PKI variant: valid, self-signed, expired, ...
    subject: str
    issuer: str
    spki_sha256: str  # hex: what a `3 1 1` record of this certificate carries
    matches: bool  # a usable published TLSA record authenticates the chain (RFC 7672 §3)
    matched: str | None  # that record, `usage selector mtype data`
    why: str  # why not (or which record matched), one line
    forged_match: str | None = None  # the forged TLSA record this certificate matches

    def to_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "mx": self.mx, "presented_by": self.presented_by,
                "variant": self.variant, "subject": self.subject, "issuer": self.issuer,
                "spki_sha256": self.spki_sha256, "matches": self.matches,
                "matched": self.matched, "why": self.why, "forged_match": self.forged_match}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(count(d, "connection"), text(d, "mx"), text(d, "presented_by"),
                   text(d, "variant"), text(d, "subject"), text(d, "issuer"),
                   text(d, "spki_sha256"), flag(d, "matches"), maybe_text(d, "matched"),
                   text(d, "why"), maybe_text(d, "forged_match"))


class DaneEvidence(Struct, frozen=True):
    """The DNSSEC side of a step whose world has a `[dane]` table (`dane`): what the honest
    zone published, how it was signed, what the attacker changed and the certificates shown."""

    domain: str  # the recipient domain
    mx: tuple[str, ...]  # its MX hosts, as the scenario publishes them
    dnssec: bool  # the lab zones below test. are signed (`[dane] dnssec`)
    ds: str  # valid | missing | wrong: the recipient zone's DS as the scenario publishes it
    unsigned: tuple[str, ...] = ()  # zones left unsigned all the same
    keys: tuple[ZoneKeyTag, ...] = ()
    published: tuple[TlsaEntry, ...] = ()
    forged: tuple[TlsaEntry, ...] = ()
    tampering: tuple[Tampering, ...] = ()
    certificates: tuple[ShownCert, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "mx": list(self.mx), "dnssec": self.dnssec,
                "ds": self.ds, "unsigned": list(self.unsigned),
                "keys": [k.to_json() for k in self.keys],
                "published": [t.to_json() for t in self.published],
                "forged": [t.to_json() for t in self.forged],
                "tampering": [t.to_json() for t in self.tampering],
                "certificates": [c.to_json() for c in self.certificates]}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "domain"), texts(d, "mx"), flag(d, "dnssec"), text(d, "ds", "valid"),
                   texts(d, "unsigned"),
                   tuple(ZoneKeyTag.from_json(x) for x in objects(d, "keys")),
                   tuple(TlsaEntry.from_json(x) for x in objects(d, "published")),
                   tuple(TlsaEntry.from_json(x) for x in objects(d, "forged")),
                   tuple(Tampering.from_json(x) for x in objects(d, "tampering")),
                   tuple(ShownCert.from_json(x) for x in objects(d, "certificates")))
