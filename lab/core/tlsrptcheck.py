"""Checking a TLS report a collector received (RFC 8460 §4.4, §5.2, §5.4; R-04, R-05): decode
the body, validate it against the report schema naming every violation, and tally what it says
about one policy domain. Pure: no asyncio, socket or ssl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

from msgspec import Struct

from .names import name_key
from .tlsrpt import MEDIA_GZIP, MEDIA_JSON, POLICY_TYPES, RESULT_TYPES

MAX_REPORT_BYTES = 8 * 1024 * 1024  # decompressed; a gzip bomb is a decode error, not a hang


# ---- reading a received report: RFC 8460 §5.2, §5.4 -------------------------------------------
def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def decode_report(body: bytes, content_type: str | None) -> tuple[Any, str | None]:
    """(the JSON document, None) or (None, why it cannot be read) for a report body sent as
    `content_type` (R-05: application/tlsrpt+gzip or application/tlsrpt+json)."""
    media = media_type(content_type)
    if media not in (MEDIA_JSON, MEDIA_GZIP):
        return None, (f"media type {media or 'none'!r} is neither {MEDIA_JSON} nor {MEDIA_GZIP} "
                      "(RFC 8460 §5.4)")
    raw = body
    if media == MEDIA_GZIP:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only (RFC 8460 §5.2)
        try:
            raw = inflater.decompress(body, MAX_REPORT_BYTES)
        except zlib.error as exc:
            return None, f"{MEDIA_GZIP} body is not gzip: {exc}"
        if inflater.unconsumed_tail:
            return None, f"{MEDIA_GZIP} body inflates past {MAX_REPORT_BYTES} bytes"
        if not inflater.eof:
            return None, f"{MEDIA_GZIP} body is a truncated gzip stream"
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        return None, f"report is not UTF-8: {exc.reason} at byte {exc.start}"
    except (ValueError, RecursionError) as exc:
        return None, f"report is not JSON: {exc}"


# ---- validating a received report: RFC 8460 §4.4 (R-04) ---------------------------------------
# Each problem names the JSON path and what is wrong, e.g.
# "policies[0].summary.total-failure-session-count: 0 but failure-details count 1".
# RFC 3339 §5.6 date-time = full-date "T" full-time, full-time = partial-time time-offset; "T"
# and "Z" may be lower case (§5.6 NOTE). time-offset is not optional.
_DATETIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                       r"(?:(Z)|([+-])(\d\d):(\d\d))", re.IGNORECASE)
_LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", re.IGNORECASE)
# A moment as the validator orders it: the whole second in UTC (a leap second as 23:59:59),
# whether it is the leap second itself, and the microseconds.
_Moment = tuple[dt.datetime, bool, int]


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, types in (("string", str), ("integer", int), ("number", float), ("array", list),
                        ("object", dict)):
        if isinstance(value, types):
            return kind
    return type(value).__name__


class _Check:
    """Collects violations while walking one document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def field(self, obj: Mapping[str, Any], key: str, path: str, kind: str, *,
              required: bool = True) -> Any:
        """obj[key] if it has JSON type `kind`, else None (and a problem when it matters)."""
        where = f"{path}.{key}" if path else key
        if key not in obj:
            if required:
                self.bad(where, "missing (required)")
            return None
        value = obj[key]
        if _kind(value) != kind:
            self.bad(where, f"must be a{'n' if kind[0] in 'aeio' else ''} {kind}, got {_kind(value)}")
            return None
        return value

    def count(self, obj: Mapping[str, Any], key: str, path: str) -> int | None:
        value = self.field(obj, key, path, "integer")
        if value is None:
            return None
        if value < 0:
            self.bad(f"{path}.{key}", f"{value} is negative")
            return None
        return int(value)

    def text(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        value = self.field(obj, key, path, "string", required=required)
        if value is None:
            return None
        if not value.strip():
            self.bad(f"{path}.{key}" if path else key, "is empty")
            return None
        return str(value)


def _moment(check: _Check, obj: Mapping[str, Any], key: str) -> _Moment | None:
    """An RFC 3339 §5.6 date-time (RFC 8460 §4.4: `start-datetime`, `end-datetime`)."""
    value = check.text(obj, key, "date-range")
    if value is None:
        return None
    where = f"date-range.{key}"
    m = _DATETIME.fullmatch(value)
    if m is None:
        if _LOCAL_TIME.fullmatch(value):
            # Microsoft's reports have been sent like this (mox: testdata/tlsreports). RFC 3339
            # §4.4 calls such "unqualified local time" unfit for the Internet; a receiver may
            # guess UTC, but a sender under test is judged by the format it must send.
            check.bad(where, f"{value!r} has no UTC offset: RFC 3339 §5.6 requires a "
                      "time-offset ('Z' for UTC)")
        else:
            check.bad(where, f"{value!r} is not an RFC 3339 date-time")
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zulu, sign, off_h, off_m = m.groups()[6:]
    leap = second == 60  # RFC 3339 §5.6 time-second = 2DIGIT ; 00-58, 00-59, 00-60
    try:
        if not zulu and (int(off_h) > 23 or int(off_m) > 59):  # time-numoffset: hour, minute
            raise ValueError("offset out of range")
        offset = dt.timedelta(hours=int(off_h), minutes=int(off_m)) if not zulu else dt.timedelta()
        zone = dt.timezone(-offset if sign == "-" else offset)
        whole = dt.datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=zone)
    except ValueError:
        check.bad(where, f"{value!r} is not a real date and time")
        return None
    utc = whole.astimezone(dt.UTC)
    # RFC 3339 §5.7: second 60 only at a leap second, which is 23:59:60 UTC on the last day of a
    # month ("in time zones other than Z, the leap second point is shifted by the zone offset").
    if leap and not (utc.time() == dt.time(23, 59, 59) and (utc + dt.timedelta(days=1)).day == 1):
        check.bad(where, f"{value!r} is not a real date and time (second 60 is only "
                  "23:59:60 UTC at the end of a month, RFC 3339 §5.7)")
        return None
    return utc, leap, int((frac or "0")[:6].ljust(6, "0"))


def validate_report(doc: object) -> tuple[str, ...]:
    """Every way `doc` (a decoded JSON value) breaks the RFC 8460 §4.4 report schema; () if none.

    Checks required fields and their types, `date-range` (RFC 3339, start not after end), the
    `policies` array with its policy types (R-04), result types, IP addresses, and that each
    policy's failure count equals the sum of its failure details. Never raises."""
    check = _Check()
    if not isinstance(doc, dict):
        return (f"report: must be a JSON object, got {_kind(doc)}",)
    check.text(doc, "organization-name", "")
    check.text(doc, "contact-info", "")
    check.text(doc, "report-id", "")
    span = check.field(doc, "date-range", "", "object")
    if span is not None:
        start, end = _moment(check, span, "start-datetime"), _moment(check, span, "end-datetime")
        if start is not None and end is not None and start > end:
            check.bad("date-range", f"start-datetime {span['start-datetime']} is after "
                      f"end-datetime {span['end-datetime']}")
    policies = check.field(doc, "policies", "", "array")
    if policies is not None and not policies:
        check.bad("policies", "is empty (a report covers at least one policy)")
    for i, entry in enumerate(policies or []):
        _policy_entry(check, entry, f"policies[{i}]")
    return tuple(check.problems)


def _policy_entry(check: _Check, entry: object, path: str) -> None:
    if not isinstance(entry, dict):
        check.bad(path, f"must be an object, got {_kind(entry)}")
        return
    policy = check.field(entry, "policy", path, "object")
    if policy is not None:
        where = f"{path}.policy"
        ptype = check.text(policy, "policy-type", where)
        if ptype is not None and ptype not in POLICY_TYPES:
            check.bad(f"{where}.policy-type", f"{ptype!r} is not one of {', '.join(POLICY_TYPES)}")
        check.text(policy, "policy-domain", where)
        lines = check.field(policy, "policy-string", where, "array", required=False)
        _strings(check, lines or [], f"{where}.policy-string")
        mx = policy.get("mx-host")
        if isinstance(mx, list):  # RFC 8460 erratum 6241: a string or an array of them
            _strings(check, mx, f"{where}.mx-host")
        elif mx is not None and not isinstance(mx, str):
            check.bad(f"{where}.mx-host", f"must be a string or an array of strings, got {_kind(mx)}")
    summary = check.field(entry, "summary", path, "object")
    failures = None
    if summary is not None:
        check.count(summary, "total-successful-session-count", f"{path}.summary")
        failures = check.count(summary, "total-failure-session-count", f"{path}.summary")
    details = check.field(entry, "failure-details", path, "array", required=False) or []
    counted = sum(_detail_count(check, d, f"{path}.failure-details[{j}]")
                  for j, d in enumerate(details))
    if failures is not None and failures != counted:
        check.bad(f"{path}.summary.total-failure-session-count",
                  f"{failures} but failure-details count {counted}")


def _strings(check: _Check, values: list[Any], path: str) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            check.bad(f"{path}[{i}]", f"must be a string, got {_kind(value)}")


def _detail_count(check: _Check, detail: object, path: str) -> int:
    """Check one failure detail; its failed-session-count (0 when unusable)."""
    if not isinstance(detail, dict):
        check.bad(path, f"must be an object, got {_kind(detail)}")
        return 0
    result = check.text(detail, "result-type", path)
    if result is not None and result not in RESULT_TYPES:
        check.bad(f"{path}.result-type", f"{result!r} is not an RFC 8460 §4.3 result type")
    for key in ("sending-mta-ip", "receiving-ip"):
        ip = check.field(detail, key, path, "string", required=False)
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                check.bad(f"{path}.{key}", f"{ip!r} is not an IP address")
    for key in ("receiving-mx-hostname", "receiving-mx-helo", "additional-information",
                "failure-reason-code"):
        check.field(detail, key, path, "string", required=False)
    count = check.count(detail, "failed-session-count", path)
    if count == 0:
        check.bad(f"{path}.failed-session-count", "is 0 (a failure detail counts failed sessions)")
    return count or 0


class Tally(Struct, frozen=True):
    """What a report says about one policy domain: sessions and the failure result types."""

    successes: int
    failures: int
    result_types: frozenset[str]


def tally(doc: object, domain: str) -> Tally | None:
    """Sum a report's `policies` entries for `domain` (best effort on invalid reports; None when
    no entry names the domain)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), list):
        return None
    want = name_key(domain)
    ok = fail = 0
    types: set[str] = set()
    found = False
    for entry in doc["policies"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("policy"), dict):
            continue
        name = entry["policy"].get("policy-domain")
        if not isinstance(name, str) or name_key(name) != want:
            continue
        found = True
        summary = entry.get("summary")
        if not isinstance(summary, dict):
            summary = {}
        ok += _int(summary.get("total-successful-session-count"))
        fail += _int(summary.get("total-failure-session-count"))
        for d in entry.get("failure-details") or []:
            if isinstance(d, dict) and isinstance(d.get("result-type"), str):
                types.add(d["result-type"])
    return Tally(ok, fail, frozenset(types)) if found else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
