"""Sans-I/O SMTP TLS Reporting (RFC 8460): the `_smtp._tls` TXT record, the aggregate report a
sender builds from its session results, and the media types of its delivery. Checking a
received report is `lab.tlsrptcheck`'s job.

Pure: no asyncio, socket or ssl (and no `email`, which imports socket; mailed reports are read by
`lab.tlsrptmail`). The shell looks the record up, posts or mails the report, and feeds bytes in.
Comments cite RFC 8460 sections and the CONFORMANCE.md ids R-01..R-05.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote

from msgspec import Struct

from ..errors import LabError
from .uri import is_uri

# RFC 8460 §4.3 result types. Invariant: the registry's complete list at RFC 8460; a type
# outside it is a violation, never silently accepted.
NEGOTIATION_FAILURES = ("starttls-not-supported", "certificate-host-mismatch",
                        "certificate-expired", "certificate-not-trusted", "validation-failure")
DANE_FAILURES = ("tlsa-invalid", "dnssec-invalid", "dane-required")
STS_FAILURES = ("sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid")
RESULT_TYPES = NEGOTIATION_FAILURES + DANE_FAILURES + STS_FAILURES
POLICY_TYPES = ("tlsa", "sts", "no-policy-found")  # RFC 8460 §4.4 policy-type
MEDIA_JSON = "application/tlsrpt+json"  # RFC 8460 §5.2, §5.4
MEDIA_GZIP = "application/tlsrpt+gzip"


# ---- the `_smtp._tls.D` TXT record: RFC 8460 §3 (R-01) ----------------------------------------
class TlsRptError(LabError):
    """No usable TLS-RPT record: the sender must assume the domain does not do TLSRPT."""


class NoTlsRptRecord(TlsRptError):
    """No TXT record begins with `v=TLSRPTv1`."""


class MultipleTlsRptRecords(TlsRptError):
    """More than one `v=TLSRPTv1` record (RFC 8460 §3: "not one" means no reporting)."""


class TlsRptSyntax(TlsRptError):
    """The one `v=TLSRPTv1` record breaks the RFC 8460 §3 grammar."""


_VERSION = "v=TLSRPTv1"
_SEP = re.compile(r"[ \t]*;[ \t]*")  # field-delim = *WSP ";" *WSP
_URI_SEP = re.compile(r"[ \t]*,[ \t]*")  # tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")  # tlsrpt-ext-name
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")  # tlsrpt-ext-value
_MAILBOX = re.compile(r"[^@\s]+@[A-Za-z0-9.\-]+")


class TlsRptRecord(Struct, frozen=True):
    """A valid `_smtp._tls` record: its report URIs (mailto: and https:, in record order), the
    URIs of other schemes (ignored), and unknown fields (ignored, kept for the record)."""

    rua: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()

    @property
    def mailto(self) -> tuple[str, ...]:
        """The mailbox of every `mailto:` URI (query part dropped, %-escapes decoded)."""
        return tuple(unquote(u[7:].partition("?")[0]) for u in self.rua
                     if u[:7].lower() == "mailto:")

    @property
    def https(self) -> tuple[str, ...]:
        return tuple(u for u in self.rua if u[:8].lower() == "https://")


def _joined(record: str | Sequence[str]) -> str:
    # RFC 8460 §3: a record split into several strings is read as their concatenation.
    return record if isinstance(record, str) else "".join(record)


def is_tlsrpt(record: str) -> bool:
    """RFC 8460 §3 (R-01): "records that do not begin with "v=TLSRPTv1;" are discarded", before
    they are counted. So a bare `v=TLSRPTv1`, `v=TLSRPTv1extra; junk`, `v=TLSRPTv10; ...` and
    (case-sensitive, %s) `v=tlsrptv1; ...` are other records. As in MTA-STS discovery (D-01), the
    ";" may follow *WSP, which the ABNF's field-delim allows (`v=TLSRPTv1 ; rua=...`)."""
    return record.startswith(_VERSION) and _SEP.match(record, len(_VERSION)) is not None


def parse_tlsrpt_records(records: Sequence[str | Sequence[str]]) -> TlsRptRecord:
    """The one TLS-RPT record among the TXT records at `_smtp._tls.D` (RFC 8460 §3, R-01).

    Raises NoTlsRptRecord, MultipleTlsRptRecords or TlsRptSyntax: each means "no reporting"."""
    if isinstance(records, str):
        raise TypeError("parse_tlsrpt_records takes a sequence of records, not one string")
    ours = [r for r in map(_joined, records) if is_tlsrpt(r)]
    if not ours:
        raise NoTlsRptRecord("no TXT record begins with 'v=TLSRPTv1'")
    if len(ours) > 1:  # RFC 8460 §3: counted after the discard, before the syntax check
        raise MultipleTlsRptRecords(f"{len(ours)} v=TLSRPTv1 records: {ours!r}")
    return parse_tlsrpt_record(ours[0])


def parse_tlsrpt_record(record: str | Sequence[str]) -> TlsRptRecord:
    """tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim] (RFC 8460 §3)."""
    text = _joined(record)
    if not is_tlsrpt(text):
        raise NoTlsRptRecord(f"not a TLS-RPT record: {text!r}")
    fields = _SEP.split(text)[1:]
    if fields and fields[-1] == "":
        fields.pop()  # the optional trailing delimiter
    rua: list[str] = []
    ignored: list[str] = []
    extensions: list[tuple[str, str]] = []
    for field in fields:
        name, eq, value = field.partition("=")
        if name == "rua" and eq:
            for uri in _URI_SEP.split(value):
                _check_uri(uri)
                scheme = uri.partition(":")[0].lower()
                usable = (scheme == "mailto" and _MAILBOX.fullmatch(unquote(
                    uri[7:].partition("?")[0])) is not None) or \
                    (scheme == "https" and len(uri) > len("https://"))
                (rua if usable else ignored).append(uri)
        elif eq and _EXT_NAME.fullmatch(name) and _EXT_VALUE.fullmatch(value):
            extensions.append((name, value))  # unknown fields are ignored
        else:
            raise TlsRptSyntax(f"field {field!r} is not name=value (record {text!r})")
    if not rua and not ignored:
        raise TlsRptSyntax(f"no rua field (RFC 8460 §3 requires one): {text!r}")
    if not rua:
        raise TlsRptSyntax(f"no mailto: or https: URI in rua: {ignored!r}")
    return TlsRptRecord(tuple(rua), tuple(ignored), tuple(extensions))


def _check_uri(uri: str) -> None:
    # RFC 8460 §3 (R-01): tlsrpt-uri = URI "imported from [RFC3986]; commas (ASCII 0x2C) and
    # exclamation points (ASCII 0x21) MUST be encoded". A raw comma already split the list and a
    # raw ";" ended the field, so what is left to refuse here is "!" and whatever is not a URI
    # (`https://bad/%`: a "%" must start a pct-encoded octet).
    if "!" in uri:
        raise TlsRptSyntax(f"rua: {uri!r} has a raw '!', which RFC 8460 §3 says must be encoded "
                           "as %21")
    if not is_uri(uri):
        raise TlsRptSyntax(f"rua: {uri!r} is not an RFC 3986 URI")


def mailboxes(records: Iterable[str | Sequence[str]]) -> frozenset[str]:
    """Every `mailto:` mailbox any TXT record names, valid or not (lower-case): where a mailed
    report, or a sender's mistaken one, may arrive."""
    found: set[str] = set()
    for record in map(_joined, records):
        for part in re.findall(r"mailto:([^,;\s]+)", record, flags=re.IGNORECASE):
            found.add(unquote(part.partition("?")[0]).lower())
    return frozenset(found)


# ---- building a report: RFC 8460 §4 ----------------------------------------------------------
class Session(Struct, frozen=True):
    """One session as a reporter counts it (RFC 8460 §4.1): a TLS negotiation with one MX, or
    a policy phase that failed for a delivery. `result_type` None: a successful session."""

    policy_domain: str
    policy_type: str  # sts | tlsa | no-policy-found
    result_type: str | None = None
    policy_string: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_ip: str | None = None
    failure_reason_code: str | None = None


def datetime_text(t: float) -> str:
    """RFC 3339 date-time in UTC, whole seconds: `2026-10-04T12:00:00Z`."""
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DETAIL_KEYS = (("sending-mta-ip", "sending_mta_ip"),
                ("receiving-mx-hostname", "receiving_mx_hostname"),
                ("receiving-ip", "receiving_ip"),
                ("failure-reason-code", "failure_reason_code"))


def build_report(sessions: Sequence[Session], *, organization_name: str, contact_info: str,
                 report_id: str, start: float, end: float) -> dict[str, Any]:
    """The RFC 8460 §4.4 JSON of `sessions`: one `policies` entry per policy applied (domain,
    type, policy lines, MX patterns), its summary, and failure details grouped by result type
    and peer, each with its `failed-session-count`."""
    groups: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], list[Session]] = {}
    for s in sessions:
        groups.setdefault((s.policy_domain, s.policy_type, s.policy_string, s.mx_host), []).append(s)
    policies: list[dict[str, Any]] = []
    for (domain, ptype, pstring, mx), members in groups.items():
        policy: dict[str, Any] = {"policy-type": ptype}
        if pstring:
            policy["policy-string"] = list(pstring)
        policy["policy-domain"] = domain
        if mx:
            policy["mx-host"] = list(mx)  # an array: RFC 8460 erratum 6241
        details: dict[tuple[str | None, ...], int] = {}
        for s in members:
            if s.result_type is not None:
                key = (s.result_type, *(getattr(s, attr) for _, attr in _DETAIL_KEYS))
                details[key] = details.get(key, 0) + 1
        failures = sum(details.values())
        entry: dict[str, Any] = {"policy": policy, "summary": {
            "total-successful-session-count": len(members) - failures,
            "total-failure-session-count": failures}}
        if details:
            entry["failure-details"] = [_detail(key, count) for key, count in details.items()]
        policies.append(entry)
    return {"organization-name": organization_name,
            "date-range": {"start-datetime": datetime_text(start),
                           "end-datetime": datetime_text(max(start, end))},
            "contact-info": contact_info, "report-id": report_id, "policies": policies}


def _detail(key: tuple[str | None, ...], count: int) -> dict[str, Any]:
    out: dict[str, Any] = {"result-type": key[0]}
    out |= {name: value for (name, _), value in zip(_DETAIL_KEYS, key[1:], strict=True)
            if value is not None}
    out["failed-session-count"] = count
    return out


def report_filename(submitter: str, policy_domain: str, start: float, end: float,
                    unique_id: str = "", *, gzipped: bool = True) -> str:
    """RFC 8460 §5.1: `sender!policy-domain!begin!end[!unique-id].json[.gz]`."""
    parts = [submitter, policy_domain, str(int(start)), str(int(end))] + ([unique_id] if unique_id else [])
    return "!".join(parts) + (".json.gz" if gzipped else ".json")
