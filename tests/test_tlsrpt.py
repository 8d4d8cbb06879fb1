"""TLS reporting (RFC 8460), the pure parts: the `_smtp._tls` record (R-01), building a report,
validating a received one (R-04) and judging a step's report expectation. One line per case,
every good case beside its bad twins. Ids start with the CONFORMANCE id they cover."""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downgrade_lab.core.tlsrpt import (
    MEDIA_GZIP,
    MEDIA_JSON,
    MultipleTlsRptRecords,
    NoTlsRptRecord,
    Session,
    TlsRptRecord,
    TlsRptSyntax,
    build_report,
    mailboxes,
    parse_tlsrpt_records,
    report_filename,
)
from downgrade_lab.core.tlsrptcheck import decode_report, tally, validate_report
from downgrade_lab.core.verdict import Judgement, ReportSeen, judge_report, with_report
from tests.purity import imported_roots, loaded_by_importing

ROOT = Path(__file__).resolve().parent.parent
MAIL = "mailto:tlsrpt@example.test"
HTTPS = "https://tlsrpt.example.test/report"


def cases(names: str, *rows: tuple[object, ...]) -> pytest.MarkDecorator:
    """`parametrize` whose rows start with their readable id."""
    values = [r[1:] if "," in names else r[1] for r in rows]
    return pytest.mark.parametrize(names, values, ids=[str(r[0]) for r in rows])


# ---- the TXT record: RFC 8460 §3 (R-01) -------------------------------------------------------
@cases(
    "records, expected",
    ("R-01 one record", [f"v=TLSRPTv1; rua={MAIL}"], TlsRptRecord((MAIL,))),
    ("R-01 two uris", [f"v=TLSRPTv1; rua={MAIL},{HTTPS}"], TlsRptRecord((MAIL, HTTPS))),
    ("R-01 wsp around comma", [f"v=TLSRPTv1;rua={MAIL} , {HTTPS}"], TlsRptRecord((MAIL, HTTPS))),
    ("R-01 trailing sep", [f"v=TLSRPTv1; rua={MAIL};"], TlsRptRecord((MAIL,))),
    ("R-01 two rua fields", [f"v=TLSRPTv1; rua={MAIL}; rua={HTTPS}"], TlsRptRecord((MAIL, HTTPS))),
    ("R-01 split strings", [("v=TLSRP", "Tv1; rua=mailto:tlsrpt@exa", "mple.test")], TlsRptRecord((MAIL,))),
    ("R-01 others discarded", ["v=spf1 -all", f"v=TLSRPTv1; rua={MAIL}", "hello"], TlsRptRecord((MAIL,))),
    ("R-01 unknown fields", [f"v=TLSRPTv1; x-note=lab; rua={MAIL}; ext.v2=1"],
     TlsRptRecord((MAIL,), extensions=(("x-note", "lab"), ("ext.v2", "1")))),
    ("R-01 other scheme ignored", [f"v=TLSRPTv1; rua=ftp://x.test/r,{MAIL}"],
     TlsRptRecord((MAIL,), ignored=("ftp://x.test/r",))),
    ("R-01 none", [], NoTlsRptRecord),
    ("R-01 only others", ["v=spf1 -all"], NoTlsRptRecord),
    ("R-01 missing version", [f"rua={MAIL}"], NoTlsRptRecord),
    ("R-01 version not first", [f"rua={MAIL}; v=TLSRPTv1"], NoTlsRptRecord),
    ("R-01 lower-case version", [f"v=tlsrptv1; rua={MAIL}"], NoTlsRptRecord),
    ("R-01 version 10", [f"v=TLSRPTv10; rua={MAIL}"], NoTlsRptRecord),
    ("R-01 two records", [f"v=TLSRPTv1; rua={MAIL}", f"v=TLSRPTv1; rua={HTTPS}"], MultipleTlsRptRecords),
    # RFC 8460 §3: records not beginning with "v=TLSRPTv1;" are discarded before counting
    ("R-01 bare version discarded", [f"v=TLSRPTv1; rua={MAIL}", "v=TLSRPTv1"], TlsRptRecord((MAIL,))),
    ("R-01 version prefix discarded", ["v=TLSRPTv1extra; junk", f"v=TLSRPTv1; rua={MAIL}"], TlsRptRecord((MAIL,))),
    ("R-01 two records one broken", [f"v=TLSRPTv1; rua={MAIL}", "v=TLSRPTv1; junk"], MultipleTlsRptRecords),
    ("R-01 wsp before the first ;", [f"v=TLSRPTv1 ; rua={MAIL}"], TlsRptRecord((MAIL,))),
    ("R-01 no rua", ["v=TLSRPTv1; ruf=mailto:a@example.test"], TlsRptSyntax),
    ("R-01 version alone", ["v=TLSRPTv1"], NoTlsRptRecord),
    ("R-01 version and ; alone", ["v=TLSRPTv1;"], TlsRptSyntax),
    ("R-01 RUA is not rua", [f"v=TLSRPTv1; RUA={MAIL}"], TlsRptSyntax),
    ("R-01 only other schemes", ["v=TLSRPTv1; rua=ftp://x.test/r"], TlsRptSyntax),
    ("R-01 not a uri", ["v=TLSRPTv1; rua=tlsrpt@example.test"], TlsRptSyntax),
    ("R-01 empty uri", [f"v=TLSRPTv1; rua={MAIL},"], TlsRptSyntax),
    ("R-01 field without =", [f"v=TLSRPTv1; rua={MAIL}; junk"], TlsRptSyntax),
    # RFC 8460 §3: tlsrpt-uri is an RFC 3986 URI; "!" (and ",") must be encoded
    ("R-01 pct-encoded uri", ["v=TLSRPTv1; rua=https://tlsrpt.example.test/r%2Fx?a=%41"], TlsRptRecord(("https://tlsrpt.example.test/r%2Fx?a=%41",))),
    ("R-01 bare % in uri", ["v=TLSRPTv1; rua=https://bad/%"], TlsRptSyntax),
    ("R-01 half a %-escape", ["v=TLSRPTv1; rua=https://tlsrpt.example.test/r%4"], TlsRptSyntax),
    ("R-01 %-escape not hex", ["v=TLSRPTv1; rua=https://tlsrpt.example.test/r%zz"], TlsRptSyntax),
    ("R-01 encoded !", ["v=TLSRPTv1; rua=mailto:tls%21rpt@example.test"], TlsRptRecord(("mailto:tls%21rpt@example.test",))),
    ("R-01 raw !", ["v=TLSRPTv1; rua=mailto:tls!rpt@example.test"], TlsRptSyntax),
    ("R-01 encoded comma", ["v=TLSRPTv1; rua=https://tlsrpt.example.test/a%2Cb"], TlsRptRecord(("https://tlsrpt.example.test/a%2Cb",))),
    ("R-01 raw comma splits", ["v=TLSRPTv1; rua=https://tlsrpt.example.test/a,b"], TlsRptSyntax),
    ("R-01 space in uri", ["v=TLSRPTv1; rua=mailto:tls rpt@example.test"], TlsRptSyntax),
    ("R-01 non-ascii uri", ["v=TLSRPTv1; rua=mailto:tlsrpt@exämple.test"], TlsRptSyntax),
    ("R-01 ipv6 literal", ["v=TLSRPTv1; rua=https://[2001:db8::1]/report"], TlsRptRecord(("https://[2001:db8::1]/report",))),
    ("R-01 broken ipv6 literal", ["v=TLSRPTv1; rua=https://[2001:db8::1/report"], TlsRptSyntax),
)
def test_parse_records(records: list[Any], expected: object) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            parse_tlsrpt_records(records)
    else:
        assert parse_tlsrpt_records(records) == expected


def test_record_channels() -> None:
    record = parse_tlsrpt_records([f"v=TLSRPTv1; rua=mailto:Rep%2Bort@example.test?subject=x,{HTTPS}"])
    assert record.mailto == ("Rep+ort@example.test",)
    assert record.https == (HTTPS,)


def test_parse_refuses_one_string() -> None:
    with pytest.raises(TypeError):
        parse_tlsrpt_records(f"v=TLSRPTv1; rua={MAIL}")  # a str is a Sequence[str] to mypy


def test_mailboxes_of_any_record() -> None:
    records = [("v=TLSRPTv1; rua=mailto:A@example.test,", HTTPS), f"rua={MAIL}"]
    assert mailboxes(records) == {"a@example.test", "tlsrpt@example.test"}


# ---- a valid report and its broken twins: RFC 8460 §4.4 (R-04) ----------------------------------
GOOD: dict[str, Any] = {
    "organization-name": "Company-X",
    "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
    "contact-info": "sts-reporting@company-x.example",
    "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    "policies": [{
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing",
                                                           "mx: *.mail.company-y.example", "max_age: 86400"],
                   "policy-domain": "company-y.example", "mx-host": ["*.mail.company-y.example"]},
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [
            {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1",
             "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 100},
            {"result-type": "starttls-not-supported", "sending-mta-ip": "2001:db8:abcd:0013::1",
             "receiving-mx-hostname": "mx2.mail.company-y.example", "receiving-ip": "203.0.113.56",
             "failed-session-count": 200, "additional-information": "https://reports.example/info"},
            {"result-type": "validation-failure", "sending-mta-ip": "198.51.100.62",
             "receiving-ip": "203.0.113.58", "receiving-mx-hostname": "mx-backup.mail.company-y.example",
             "failed-session-count": 3, "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"},
        ],
    }],
}


def changed(path: str, value: object) -> dict[str, Any]:
    """GOOD with the value at a dotted path (list indexes as numbers) set, or deleted (...)."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: int | str = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return doc


@cases(
    "doc, problem",
    ("R-04 the RFC example", GOOD, None),
    ("R-04 mx-host a string (erratum 6241)", changed("policies.0.policy.mx-host", "*.x.example"), None),
    ("R-04 no failure-details", changed("policies.0", {"policy": {"policy-type": "no-policy-found", "policy-domain": "x.example"}, "summary": {"total-successful-session-count": 1, "total-failure-session-count": 0}}), None),
    ("R-04 offset date-time", changed("date-range.end-datetime", "2016-04-02T01:59:59+02:00"), None),
    # RFC 3339 §5.6/§5.7: time-second may be 60 at a leap second, 23:59:60 UTC at a month's end
    ("R-04 leap second", changed("date-range", {"start-datetime": "2016-12-31T00:00:00Z", "end-datetime": "2016-12-31T23:59:60Z"}), None),
    ("R-04 leap second in a zone", changed("date-range", {"start-datetime": "2016-12-31T00:00:00Z", "end-datetime": "2016-12-31T18:59:60-05:00"}), None),
    ("R-04 second 60 mid-month", changed("date-range.start-datetime", "2016-04-01T12:00:60Z"), "date-range.start-datetime: '2016-04-01T12:00:60Z' is not a real date and time (second 60 is only 23:59:60 UTC at the end of a month, RFC 3339 §5.7)"),
    ("R-04 second 61", changed("date-range.start-datetime", "2016-12-31T23:59:61Z"), "date-range.start-datetime: '2016-12-31T23:59:61Z' is not a real date and time"),
    ("R-04 leap second orders after :59", changed("date-range", {"start-datetime": "2016-12-31T23:59:60Z", "end-datetime": "2016-12-31T23:59:59.9Z"}), "date-range: start-datetime 2016-12-31T23:59:60Z is after end-datetime 2016-12-31T23:59:59.9Z"),
    ("R-04 lower-case t and z", changed("date-range.start-datetime", "2016-04-01t00:00:00z"), None),
    ("R-04 unknown local offset -00:00", changed("date-range.start-datetime", "2016-04-01T00:00:00-00:00"), None),
    ("R-04 no offset", changed("date-range.start-datetime", "2016-04-01T00:00:00"), "date-range.start-datetime: '2016-04-01T00:00:00' has no UTC offset: RFC 3339 §5.6 requires a time-offset ('Z' for UTC)"),
    ("R-04 offset minute 60", changed("date-range.start-datetime", "2016-04-01T00:00:00+01:60"), "date-range.start-datetime: '2016-04-01T00:00:00+01:60' is not a real date and time"),
    ("R-04 space for T", changed("date-range.start-datetime", "2016-04-01 00:00:00Z"), "date-range.start-datetime: '2016-04-01 00:00:00Z' is not an RFC 3339 date-time"),
    ("R-04 not an object", [GOOD], "report: must be a JSON object, got array"),
    ("R-04 no organization-name", changed("organization-name", ...), "organization-name: missing (required)"),
    ("R-04 empty organization-name", changed("organization-name", " "), "organization-name: is empty"),
    ("R-04 no contact-info", changed("contact-info", ...), "contact-info: missing (required)"),
    ("R-04 report-id a number", changed("report-id", 7), "report-id: must be a string, got integer"),
    ("R-04 no date-range", changed("date-range", ...), "date-range: missing (required)"),
    ("R-04 no end-datetime", changed("date-range.end-datetime", ...), "date-range.end-datetime: missing (required)"),
    ("R-04 not RFC 3339", changed("date-range.start-datetime", "April 1, 2016"), "date-range.start-datetime: 'April 1, 2016' is not an RFC 3339 date-time"),
    ("R-04 impossible date", changed("date-range.start-datetime", "2016-02-30T00:00:00Z"), "date-range.start-datetime: '2016-02-30T00:00:00Z' is not a real date and time"),
    ("R-04 start after end", changed("date-range.start-datetime", "2016-04-02T00:00:00Z"), "date-range: start-datetime 2016-04-02T00:00:00Z is after end-datetime 2016-04-01T23:59:59Z"),
    ("R-04 no policies", changed("policies", ...), "policies: missing (required)"),
    ("R-04 policies an object", changed("policies", GOOD["policies"][0]), "policies: must be an array, got object"),
    ("R-04 policies empty", changed("policies", []), "policies: is empty (a report covers at least one policy)"),
    ("R-04 policy entry a string", changed("policies.0", "sts"), "policies[0]: must be an object, got string"),
    ("R-04 no policy", changed("policies.0.policy", ...), "policies[0].policy: missing (required)"),
    ("R-04 bad policy-type", changed("policies.0.policy.policy-type", "mta-sts"), "policies[0].policy.policy-type: 'mta-sts' is not one of tlsa, sts, no-policy-found"),
    ("R-04 no policy-domain", changed("policies.0.policy.policy-domain", ...), "policies[0].policy.policy-domain: missing (required)"),
    ("R-04 policy-string a string", changed("policies.0.policy.policy-string", "version: STSv1"), "policies[0].policy.policy-string: must be an array, got string"),
    ("R-04 policy-string of numbers", changed("policies.0.policy.policy-string", [1]), "policies[0].policy.policy-string[0]: must be a string, got integer"),
    ("R-04 mx-host a number", changed("policies.0.policy.mx-host", 5), "policies[0].policy.mx-host: must be a string or an array of strings, got integer"),
    ("R-04 no summary", changed("policies.0.summary", ...), "policies[0].summary: missing (required)"),
    ("R-04 count a string", changed("policies.0.summary.total-successful-session-count", "5326"), "policies[0].summary.total-successful-session-count: must be an integer, got string"),
    ("R-04 count a boolean", changed("policies.0.summary.total-successful-session-count", True), "policies[0].summary.total-successful-session-count: must be an integer, got boolean"),
    ("R-04 count negative", changed("policies.0.summary.total-successful-session-count", -1), "policies[0].summary.total-successful-session-count: -1 is negative"),
    ("R-04 failure count too low", changed("policies.0.summary.total-failure-session-count", 0), "policies[0].summary.total-failure-session-count: 0 but failure-details count 303"),
    ("R-04 failure count too high", changed("policies.0.summary.total-failure-session-count", 304), "policies[0].summary.total-failure-session-count: 304 but failure-details count 303"),
    ("R-04 failures without details", changed("policies.0.failure-details", ...), "policies[0].summary.total-failure-session-count: 303 but failure-details count 0"),
    ("R-04 failure-details an object", changed("policies.0.failure-details", {}), "policies[0].failure-details: must be an array, got object"),
    ("R-04 unknown result type", changed("policies.0.failure-details.0.result-type", "certificate-revoked"), "policies[0].failure-details[0].result-type: 'certificate-revoked' is not an RFC 8460 §4.3 result type"),
    ("R-04 no result type", changed("policies.0.failure-details.0.result-type", ...), "policies[0].failure-details[0].result-type: missing (required)"),
    ("R-04 bad sending-mta-ip", changed("policies.0.failure-details.0.sending-mta-ip", "mx.example"), "policies[0].failure-details[0].sending-mta-ip: 'mx.example' is not an IP address"),
    ("R-04 bad receiving-ip", changed("policies.0.failure-details.1.receiving-ip", "203.0.113.256"), "policies[0].failure-details[1].receiving-ip: '203.0.113.256' is not an IP address"),
    ("R-04 hostname a list", changed("policies.0.failure-details.0.receiving-mx-hostname", ["mx1"]), "policies[0].failure-details[0].receiving-mx-hostname: must be a string, got array"),
    ("R-04 no failed-session-count", changed("policies.0.failure-details.2.failed-session-count", ...), "policies[0].failure-details[2].failed-session-count: missing (required)"),
    ("R-04 zero failed-session-count", changed("policies.0.failure-details.2.failed-session-count", 0), "policies[0].failure-details[2].failed-session-count: is 0 (a failure detail counts failed sessions)"),
)
def test_validate_report(doc: object, problem: str | None) -> None:
    problems = validate_report(doc)
    if problem is None:
        assert problems == ()
    else:
        assert problem in problems, problems


def test_every_violation_is_named() -> None:
    doc = changed("organization-name", ...)
    doc["policies"][0]["policy"]["policy-type"] = "dane"
    doc["policies"][0]["failure-details"][0]["result-type"] = "oops"
    assert validate_report(doc) == (
        "organization-name: missing (required)",
        "policies[0].policy.policy-type: 'dane' is not one of tlsa, sts, no-policy-found",
        "policies[0].failure-details[0].result-type: 'oops' is not an RFC 8460 §4.3 result type",
    )


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.sampled_from(sorted(_KEYS := {
                        "organization-name", "date-range", "start-datetime", "end-datetime",
                        "contact-info", "report-id", "policies", "policy", "policy-type",
                        "policy-domain", "policy-string", "mx-host", "summary", "failure-details",
                        "total-successful-session-count", "total-failure-session-count",
                        "result-type", "failed-session-count", "sending-mta-ip", "receiving-ip"}))
                                    | st.text(max_size=4), inner, max_size=6),
                    max_leaves=30))
def test_validator_never_raises(doc: object) -> None:
    problems = validate_report(doc)
    assert isinstance(problems, tuple) and all(isinstance(p, str) for p in problems)
    tally(doc, "example.test")


# ---- building: what the reference sender sends validates ---------------------------------------
STS = ("version: STSv1", "mode: testing", "mx: mx1.example.test", "max_age: 604800")


def test_built_report_is_valid_and_counts_sessions() -> None:
    sessions = [
        Session("example.test", "sts", None, STS, ("mx1.example.test",)),
        Session("example.test", "sts", "starttls-not-supported", STS, ("mx1.example.test",), "127.0.0.1", "mx1.example.test", "127.0.0.1"),
        Session("example.test", "sts", "starttls-not-supported", STS, ("mx1.example.test",), "127.0.0.1", "mx1.example.test", "127.0.0.1"),
        Session("example.test", "sts", "sts-policy-fetch-error", failure_reason_code="refused"),
        Session("other.test", "no-policy-found"),
    ]
    doc = build_report(sessions, organization_name="Lab", contact_info="a@sender.test",
                       report_id="r1", start=1_700_000_000, end=1_700_086_399)
    assert validate_report(doc) == ()
    assert doc["date-range"] == {"start-datetime": "2023-11-14T22:13:20Z", "end-datetime": "2023-11-15T22:13:19Z"}
    first, fetch, other = doc["policies"]
    assert first["policy"] == {"policy-type": "sts", "policy-string": list(STS), "policy-domain": "example.test", "mx-host": ["mx1.example.test"]}
    assert first["summary"] == {"total-successful-session-count": 1, "total-failure-session-count": 2}
    assert first["failure-details"] == [{"result-type": "starttls-not-supported", "sending-mta-ip": "127.0.0.1", "receiving-mx-hostname": "mx1.example.test", "receiving-ip": "127.0.0.1", "failed-session-count": 2}]
    assert fetch["failure-details"] == [{"result-type": "sts-policy-fetch-error", "failure-reason-code": "refused", "failed-session-count": 1}]
    assert "failure-details" not in other
    assert tally(doc, "EXAMPLE.test.") is not None
    assert tally(doc, "example.test").result_types == {"starttls-not-supported", "sts-policy-fetch-error"}  # type: ignore[union-attr]
    assert tally(doc, "nowhere.test") is None


def test_report_filename() -> None:
    assert report_filename("sender.test", "example.test", 1, 2, "u1") == "sender.test!example.test!1!2!u1.json.gz"
    assert report_filename("s.test", "d.test", 1.9, 2.2, gzipped=False) == "s.test!d.test!1!2.json"


# ---- decoding a body: RFC 8460 §5.2, §5.4 (R-05) ------------------------------------------------
RAW = json.dumps(GOOD).encode()


@cases(
    "body, content_type, error",
    ("R-05 json", RAW, MEDIA_JSON, None),
    ("R-05 gzip", gzip.compress(RAW), MEDIA_GZIP, None),
    ("R-05 parameters ignored", RAW, "Application/TLSRPT+JSON; charset=utf-8", None),
    ("R-05 plain json type", RAW, "application/json", "media type 'application/json' is neither"),
    ("R-05 no type", RAW, None, "media type 'none' is neither"),
    ("R-05 gzip labelled json", gzip.compress(RAW), MEDIA_JSON, "report is not UTF-8"),
    ("R-05 json labelled gzip", RAW, MEDIA_GZIP, "body is not gzip"),
    ("R-05 truncated gzip", gzip.compress(RAW)[:-12], MEDIA_GZIP, "truncated gzip stream"),
    ("R-05 gzip bomb", gzip.compress(b" " * (9 * 1024 * 1024)), MEDIA_GZIP, "inflates past"),
    ("R-05 not json", b"{oops", MEDIA_JSON, "report is not JSON"),
)
def test_decode_report(body: bytes, content_type: str | None, error: str | None) -> None:
    doc, why = decode_report(body, content_type)
    if error is None:
        assert why is None and doc == GOOD
    else:
        assert doc is None and why is not None and error in why, why


# ---- judging a step's expectation (lab.verdict) ------------------------------------------------
SNS = frozenset({"starttls-not-supported"})
OK = ReportSeen("https", successes=1)
FAILED = ReportSeen("mail", failures=1, result_types=SNS)


@cases(
    "expected, reports, capable, verdict, reason",
    ("no expectation", None, [OK], True, None, None),
    ("incapable sender", ("starttls-not-supported",), [], False, "SKIP", "sender lacks tls-rpt"),
    ("success reported", (), [OK], True, "PASS", ""),
    ("success missing", (), [], True, "FAIL", "no TLS report arrived (expected result types: none)"),
    ("success, but failures", (), [FAILED], True, "FAIL", "report by mail has 1 failed session(s) (starttls-not-supported) where every session succeeded"),
    ("success, no sessions", (), [ReportSeen("https")], True, "FAIL", "report by https counts no successful session"),
    ("failure reported both ways", ("starttls-not-supported",), [FAILED, ReportSeen("https", failures=1, result_types=SNS)], True, "PASS", ""),
    ("failure missing", ("starttls-not-supported",), [OK], True, "FAIL", "report by https lacks starttls-not-supported"),
    ("wrong failure", ("certificate-expired",), [FAILED], True, "FAIL", "report by mail lacks certificate-expired and has unexpected starttls-not-supported"),
    ("one channel disagrees", ("starttls-not-supported",), [FAILED, OK], True, "FAIL", "report by https lacks starttls-not-supported"),
    ("invalid report", ("starttls-not-supported",), [ReportSeen("https", problems=("a", "b"), result_types=SNS)], True, "FAIL", "invalid report by https: a (+1 more)"),
    ("wrong domain", ("starttls-not-supported",), [ReportSeen("https", covers_domain=False)], True, "FAIL", "report by https has no policies entry for the recipient domain"),
    ("R-01 none due, none sent", False, [], True, "PASS", ""),
    ("R-01 none due, one sent", False, [OK], True, "FAIL", "sent 1 report(s) (https) although the domain has no usable TLS-RPT record (R-01)"),
    ("R-01 incapable", False, [], False, "SKIP", "sender lacks tls-rpt"),
)
def test_judge_report(expected: tuple[str, ...] | Literal[False] | None, reports: list[ReportSeen],
                      capable: bool, verdict: str | None, reason: str | None) -> None:
    got = judge_report(expected, reports, capable)
    if verdict is None:
        assert got is None
    else:
        assert got == Judgement(verdict, reason or "")


@cases(
    "delivery, report, verdict",
    ("no check", Judgement("PASS", ""), None, "PASS"),
    ("skip keeps pass", Judgement("PASS", ""), Judgement("SKIP", "x"), "PASS"),
    ("skip keeps fail", Judgement("FAIL", "d"), Judgement("SKIP", "x"), "FAIL"),
    ("report fail fails a pass", Judgement("PASS", ""), Judgement("FAIL", "x"), "FAIL"),
    ("report fail fails a weak", Judgement("WEAK", "w"), Judgement("FAIL", "x"), "FAIL"),
    ("lab error wins", Judgement("FAIL", "d"), Judgement("ERROR", "x"), "ERROR"),
)
def test_with_report(delivery: Judgement, report: Judgement | None, verdict: str) -> None:
    assert with_report(delivery, report).verdict == verdict


def test_report_failure_reason_says_tls_rpt() -> None:
    assert with_report(Judgement("PASS", ""), Judgement("FAIL", "no report")).reason == "TLS-RPT: no report"


# ---- purity (STYLE habit 1) --------------------------------------------------------------------
@pytest.mark.parametrize("module", ["lab/core/tlsrpt.py", "lab/core/tlsrptcheck.py", "lab/core/uri.py", "lab/core/verdict.py"])
def test_pure_imports(module: str) -> None:
    assert not imported_roots(module) & {"asyncio", "socket", "ssl", "email"}


def test_pure_imports_transitively() -> None:
    assert loaded_by_importing("downgrade_lab.core.tlsrpt", "downgrade_lab.core.tlsrptcheck",
                               among=frozenset({"asyncio", "socket", "ssl"})) == set()


# ---- the matrix cell suffix (lab.report.terminal) ----------------------------------------------
@cases(
    "checks, suffix",
    ("no check", [None, None], ""),
    ("pass", [None, "PASS"], "report PASS"),
    ("skip", ["SKIP", "SKIP"], "report SKIP"),
    ("fail wins", ["PASS", "FAIL"], "report FAIL"),
)
def test_cell_report(checks: list[str | None], suffix: str) -> None:
    from downgrade_lab.frontends.report.terminal import cell_report

    steps = [{"report_check": {"verdict": c, "reason": ""}} if c else {} for c in checks]
    assert cell_report({"steps": steps}) == suffix


# ---- the scenario key (lab.scenario) -----------------------------------------------------------
@cases(
    "value, expected",
    ("list", ["starttls-not-supported", "validation-failure"], ("starttls-not-supported", "validation-failure")),
    ("success only", [], ()),
    ("no report", False, False),
    ("true", True, "must be a list of TLS-RPT result types or false, got bool True"),
    ("a string", "starttls-not-supported", "must be a list of TLS-RPT result types or false"),
    ("unknown type", ["certificate-revoked"], "step[0].report[0]: 'certificate-revoked' is not one of"),
    ("twice", ["validation-failure", "validation-failure"], "names a result type twice"),
)
def test_scenario_report_key(value: object, expected: object) -> None:
    from downgrade_lab.core.scenario import parse_scenario
    from downgrade_lab.errors import ScenarioError

    data = {"title": "t", "step": [{"expect": "delivered", "report": value}]}
    if isinstance(expected, str):
        with pytest.raises(ScenarioError, match=re.escape(expected)):
            parse_scenario(data, file="x.toml", scenario_id="x")
    else:
        assert parse_scenario(data, file="x.toml", scenario_id="x").steps[0].report == expected
