"""MTA-STS discovery, parsing, fetch validation, MX matching and the cache decisions, one line per
case in the mox style: every good case has its bad twins beside it. Each id starts with the
CONFORMANCE id it covers."""

from __future__ import annotations

from pathlib import Path

import pytest
from msgspec.structs import replace

from downgrade_lab.core.policy import (
    FetchError,
    MultipleRecords,
    NoRecord,
    Policy,
    PolicyError,
    PolicySyntax,
    RecordSyntax,
    TxtRecord,
    join_strings,
    mx_matches,
    parse_policy,
    parse_txt_records,
    serialise_policy,
    tls_required,
    validate_fetch,
)
from downgrade_lab.core.policycache import (
    CachedPolicy,
    PolicyCache,
    TxtFailure,
    after_fetch,
    decide,
    discover,
)
from downgrade_lab.errors import LabError
from tests.purity import imported_roots, loaded_by_importing

ROOT = Path(__file__).resolve().parent.parent


def cases(names: str, *rows: tuple[object, ...]) -> pytest.MarkDecorator:
    """`parametrize` whose rows start with their readable id."""
    values = [r[1:] if "," in names else r[1] for r in rows]
    return pytest.mark.parametrize(names, values, ids=[str(r[0]) for r in rows])


ID32 = "a" * 32


# ---- TXT records: RFC 8461 §3.1 --------------------------------------------------------------
@cases(
    "records, expected",
    ("D-01 one record", ["v=STSv1; id=20160831085700Z"], "20160831085700Z"),
    ("D-01 others discarded", ["v=spf1 -all", "v=STSv1; id=abc", "hello"], "abc"),
    ("D-01 none left", ["v=spf1 -all", "hello"], NoRecord),
    ("D-01 no records", [], NoRecord),
    ("D-02 two records", ["v=STSv1; id=1", "v=STSv1; id=2"], MultipleRecords),
    ("D-02 two identical", ["v=STSv1; id=1", "v=STSv1; id=1"], MultipleRecords),
    ("D-02 counted before syntax", ["v=STSv1; id=1", "v=STSv1; junk"], MultipleRecords),
    ("D-03 exact", ["v=STSv1; id=1"], "1"),
    ("D-03 id first", ["id=1; v=STSv1"], NoRecord),
    ("D-03 v=STSv10", ["v=STSv10; id=1"], NoRecord),
    ("D-03 v=STSv2", ["v=STSv2; id=1"], NoRecord),
    ("D-03 v=stsv1", ["v=stsv1; id=1"], NoRecord),
    ("D-03 V=STSv1", ["V=STSv1; id=1"], NoRecord),
    ("D-03 leading space", [" v=STSv1; id=1"], NoRecord),
    ("D-03 version alone", ["v=STSv1"], NoRecord),
    ("D-03 no separator", ["v=STSv1 id=1"], NoRecord),
    ("D-04 id 1 char", ["v=STSv1; id=a"], "a"),
    ("D-04 id 32 chars", [f"v=STSv1; id={ID32}"], ID32),
    ("D-04 id 33 chars", [f"v=STSv1; id={ID32}b"], RecordSyntax),
    ("D-04 id=2026-10-04", ["v=STSv1; id=2026-10-04"], RecordSyntax),
    ("D-04 id empty", ["v=STSv1; id="], RecordSyntax),
    ("D-04 id missing", ["v=STSv1; foo=bar"], RecordSyntax),
    ("D-04 version only and ;", ["v=STSv1;"], RecordSyntax),
    ("D-04 ID is not id", ["v=STSv1; ID=abc"], RecordSyntax),
    ("D-04 id non-ascii", ["v=STSv1; id=ab\u00e9"], RecordSyntax),
    ("D-05 no spaces", ["v=STSv1;id=abc"], "abc"),
    ("D-05 WSP around ;", ["v=STSv1 ;\tid=abc"], "abc"),
    ("D-05 trailing ;", ["v=STSv1; id=abc;"], "abc"),
    ("D-05 trailing ; and WSP", ["v=STSv1; id=abc ; "], "abc"),
    ("D-05 unknown field first", ["v=STSv1; foo=bar; id=abc"], "abc"),
    ("D-05 unknown value chars", ["v=STSv1; id=abc; x.y-z_1=a:b<>~!"], "abc"),
    ("D-05 trailing WSP no ;", ["v=STSv1; id=abc "], RecordSyntax),
    ("D-05 space in value", ["v=STSv1; id=abc def"], RecordSyntax),
    ("D-05 empty field", ["v=STSv1; id=abc;; foo=1"], RecordSyntax),
    ("D-05 = in value", ["v=STSv1; id=abc; foo=a=b"], RecordSyntax),
    ("D-05 name too long", ["v=STSv1; id=abc; " + "n" * 33 + "=1"], RecordSyntax),
    ("D-06 first id counts", ["v=STSv1; id=first; id=second"], "first"),
    ("D-06 bad first id", ["v=STSv1; id=bad-1; id=good"], RecordSyntax),
)
def test_parse_txt_records(records: list[str], expected: str | type[PolicyError]) -> None:
    if isinstance(expected, str):
        assert parse_txt_records(records).id == expected
    else:
        with pytest.raises(expected):
            parse_txt_records(records)


def test_txt_extensions_first_of_each() -> None:  # D-05, D-06
    record = parse_txt_records(["v=STSv1; a=1; id=x; a=2; b=3"])
    assert record == TxtRecord(id="x", extensions=(("a", "1"), ("b", "3")))


@cases(
    "parts, expected, with_spaces",
    ("D-07 str parts", ["v=STSv1; ", "id=2"], "2", "2"),
    ("D-07 bytes parts", [b"v=STSv1;", b" id=abc"], "abc", "abc"),
    ("D-07 split inside id", ["v=STSv1; id=ab", "cd"], "abcd", RecordSyntax),
    ("D-07 split inside v=", ["v=ST", "Sv1; id=1"], "1", NoRecord),
    ("D-07 bytes split inside id", [b"v=STSv1; id=20", b"26"], "2026", RecordSyntax),
)
def test_join_strings(parts: list[bytes | str], expected: str,
                      with_spaces: str | type[PolicyError]) -> None:
    assert parse_txt_records([join_strings(parts)]).id == expected
    # the twin: joined with a space, as a wrong reader would
    spaced = " ".join(p.decode() if isinstance(p, bytes) else p for p in parts)
    if isinstance(with_spaces, str):
        assert parse_txt_records([spaced]).id == with_spaces
    else:
        with pytest.raises(with_spaces):
            parse_txt_records([spaced])


def test_parse_txt_records_rejects_one_string() -> None:
    with pytest.raises(TypeError):
        parse_txt_records("v=STSv1; id=1")


# ---- policy: RFC 8461 §3.2 -------------------------------------------------------------------
Ext = tuple[tuple[str, str], ...]


def pol(mode: str, *mx: str, max_age: int = 604800, ext: Ext = ()) -> Policy:
    return Policy(mode=mode, mx=mx, max_age=max_age, extensions=ext)  # type: ignore[arg-type]


V, E, MX, AGE = "version: STSv1", "mode: enforce", "mx: mail.example.test", "max_age: 604800"
GOOD = f"{V}\r\n{E}\r\n{MX}\r\n{AGE}\r\n"
ENFORCE = pol("enforce", "mail.example.test")


def lines(*ls: str, end: str = "\n") -> str:
    return end.join(ls) + end


@cases(
    "body, expected",
    ("P-01 CRLF", GOOD, ENFORCE),
    ("P-01 bytes", GOOD.encode(), ENFORCE),
    ("P-01 LF", lines(V, E, MX, AGE), ENFORCE),
    ("P-01 no final CRLF", GOOD[:-2], ENFORCE),
    ("P-01 no final LF", lines(V, E, MX, AGE)[:-1], ENFORCE),
    ("P-01 mixed ends", f"{V}\n{E}\r\n{MX}\n{AGE}", ENFORCE),
    ("P-01 no space after :", lines("version:STSv1", "mode:enforce", "mx:mail.example.test",
                                    "max_age:604800"), ENFORCE),
    ("P-01 tabs after :", lines("version:\t STSv1", E, MX, AGE), ENFORCE),
    ("P-01 trailing WSP", lines("version: STSv1 \t", "mode: enforce ", MX, AGE), ENFORCE),
    ("P-01 CR-only ends", f"{V}\r{E}\r{MX}\r{AGE}\r", PolicySyntax),
    ("P-01 blank line", lines(V, "", E, MX, AGE), PolicySyntax),
    ("P-01 two final LFs", lines(V, E, MX, AGE) + "\n", PolicySyntax),
    ("P-01 leading space", lines(V, " mode: enforce", MX, AGE), PolicySyntax),
    ("P-01 no colon", lines("version STSv1", E, MX, AGE), PolicySyntax),
    ("P-02 key order free", lines(AGE, MX, E, V), ENFORCE),
    ("P-02 two mx", lines(V, E, MX, "mx: *.backup.example.test", AGE),
     pol("enforce", "mail.example.test", "*.backup.example.test")),
    ("P-02 testing", lines(V, "mode: testing", MX, AGE), pol("testing", "mail.example.test")),
    ("P-02 none without mx", lines(V, "mode: none", AGE), pol("none")),
    ("P-02 max_age 0", lines(V, E, MX, "max_age: 0"), pol("enforce", MX[4:], max_age=0)),
    ("P-02 max_age 10 digits", lines(V, E, MX, "max_age: 0000086400"),
     pol("enforce", MX[4:], max_age=86400)),
    ("P-02 no version", lines(E, MX, AGE), PolicySyntax),
    ("P-02 no mode", lines(V, MX, AGE), PolicySyntax),
    ("P-02 no max_age", lines(V, E, MX), PolicySyntax),
    ("P-02 enforce without mx", lines(V, E, AGE), PolicySyntax),
    ("P-02 testing without mx", lines(V, "mode: testing", AGE), PolicySyntax),
    ("P-02 version STSv2", lines("version: STSv2", E, MX, AGE), PolicySyntax),
    ("P-02 version stsv1", lines("version: stsv1", E, MX, AGE), PolicySyntax),
    ("P-02 Version key", lines("Version: STSv1", E, MX, AGE), PolicySyntax),
    ("P-02 max_age 11 digits", lines(V, E, MX, "max_age: 12345678901"), PolicySyntax),
    ("P-02 max_age negative", lines(V, E, MX, "max_age: -1"), PolicySyntax),
    ("P-02 max_age plus", lines(V, E, MX, "max_age: +60"), PolicySyntax),
    ("P-02 max_age 1e6", lines(V, E, MX, "max_age: 1e6"), PolicySyntax),
    ("P-02 max_age empty", lines(V, E, MX, "max_age:"), PolicySyntax),
    ("P-02 max_age unicode", lines(V, E, MX, "max_age: \u0666\u0660"), PolicySyntax),
    ("P-02 mx bare wildcard", lines(V, E, "mx: *", AGE), PolicySyntax),
    ("P-02 mx partial wildcard", lines(V, E, "mx: x*.example.test", AGE), PolicySyntax),
    # M-01: matching ignores a trailing dot, so the absolute form is a valid pattern (not two)
    ("P-02 mx trailing dot", lines(V, E, "mx: mail.example.test.", AGE),
     pol("enforce", "mail.example.test.")),
    ("P-02 mx two trailing dots", lines(V, E, "mx: mail.example.test..", AGE), PolicySyntax),
    ("P-02 mx only a dot", lines(V, E, "mx: .", AGE), PolicySyntax),
    ("P-02 mx leading hyphen", lines(V, E, "mx: -mail.example.test", AGE), PolicySyntax),
    ("P-02 mx underscore", lines(V, E, "mx: mail_1.example.test", AGE), PolicySyntax),
    ("P-02 mx U-label", lines(V, E, "mx: b\u00fccher.example", AGE), PolicySyntax),
    ("P-02 mx two names", lines(V, E, "mx: a.test b.test", AGE), PolicySyntax),
    ("P-03 unknown key", lines(V, E, "comment: see https://x.test/a b: c", MX, AGE),
     pol("enforce", MX[4:], ext=(("comment", "see https://x.test/a b: c"),))),
    ("P-03 unknown utf-8", lines(V, E, MX, AGE, "note: gr\u00fc\u00dfe"),
     pol("enforce", MX[4:], ext=(("note", "gr\u00fc\u00dfe"),))),
    ("P-03 unknown empty", lines(V, E, MX, AGE, "note:"), PolicySyntax),
    ("P-03 unknown with tab", lines(V, E, MX, AGE, "note: a\tb"), PolicySyntax),
    ("P-03 key too long", lines(V, E, MX, AGE, "k" * 33 + ": v"), PolicySyntax),
    ("P-04 first mode", lines(V, "mode: testing", E, MX, AGE), pol("testing", MX[4:])),
    ("P-04 first max_age", lines(V, E, MX, "max_age: 60", AGE), pol("enforce", MX[4:], max_age=60)),
    ("P-04 first version", lines(V, "version: STSv2", E, MX, AGE), ENFORCE),
    ("P-04 first unknown", lines(V, E, MX, AGE, "a: 1", "a: 2"), pol("enforce", MX[4:],
                                                                   ext=(("a", "1"),))),
    ("P-04 first mode invalid", lines(V, "mode: bogus", E, MX, AGE), PolicySyntax),
    ("P-05 mode Enforce", lines(V, "mode: Enforce", MX, AGE), PolicySyntax),
    ("P-05 mode bogus", lines(V, "mode: bogus", MX, AGE), PolicySyntax),
    ("P-05 mode empty", lines(V, "mode:", MX, AGE), PolicySyntax),
    ("P-05 Mode key", lines(V, "Mode: enforce", MX, AGE), PolicySyntax),
    ("P-06 max_age at limit", lines(V, E, MX, "max_age: 31557600"),
     pol("enforce", MX[4:], max_age=31557600)),
    ("P-06 max_age clamped", lines(V, E, MX, "max_age: 31557601"),
     pol("enforce", MX[4:], max_age=31557600)),
    ("P-06 max_age 10 nines", lines(V, E, MX, "max_age: 9999999999"),
     pol("enforce", MX[4:], max_age=31557600)),
    ("P-07 html", "<!DOCTYPE html>\n<html><body>version: STSv1</body></html>\n", PolicySyntax),
    ("P-07 json", '{"version": "STSv1", "mode": "enforce"}', PolicySyntax),
    ("P-07 empty", "", PolicySyntax),
    ("P-07 only LF", "\n", PolicySyntax),
    ("P-07 not utf-8", GOOD.encode() + b"note: \xff\r\n", PolicySyntax),
    ("P-07 BOM", "\ufeff" + GOOD, PolicySyntax),
    ("P-07 NUL", lines(V, E, MX, AGE, "note: a\x00b"), PolicySyntax),
)
def test_parse_policy(body: bytes | str, expected: Policy | type[PolicyError]) -> None:
    if isinstance(expected, Policy):
        assert parse_policy(body) == expected
    else:
        with pytest.raises(expected):
            parse_policy(body)


@cases(
    "policy",
    ("enforce", ENFORCE),
    ("none no mx", pol("none")),
    ("wildcards and ext", pol("testing", "*.a.test", "b.test", max_age=1, ext=(("x", "y z"),))),
)
def test_serialise_round_trips(policy: Policy) -> None:
    text = serialise_policy(policy)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert parse_policy(text) == policy


def test_serialise_layout() -> None:
    assert serialise_policy(ENFORCE) == GOOD


@cases(
    "kwargs",
    ("P-05 bad mode", {"mode": "strict", "mx": ("a.test",), "max_age": 1}),
    ("P-02 no mx", {"mode": "enforce", "mx": (), "max_age": 1}),
    ("P-06 max_age too big", {"mode": "none", "mx": (), "max_age": 31557601}),
    ("P-02 negative max_age", {"mode": "none", "mx": (), "max_age": -1}),
    ("P-02 bad mx", {"mode": "enforce", "mx": ("x*.a.test",), "max_age": 1}),
    ("P-02 bad version", {"mode": "none", "mx": (), "max_age": 1, "version": "STSv2"}),
    ("P-03 known key as ext", {"mode": "none", "mx": (), "max_age": 1,
                               "extensions": (("mx", "a"),)}),
    ("P-04 repeated ext", {"mode": "none", "mx": (), "max_age": 1,
                           "extensions": (("a", "1"), ("a", "2"))}),
)
def test_policy_validates_itself(kwargs: dict[str, object]) -> None:
    with pytest.raises(PolicySyntax):
        Policy(**kwargs)  # type: ignore[arg-type]
    # a valid policy changed into the same one is checked as well (msgspec >= 0.21 runs
    # __post_init__ in replace, as dataclasses.replace did)
    valid = Policy(mode="none", mx=(), max_age=1)
    with pytest.raises(PolicySyntax):
        replace(valid, **kwargs)


# ---- fetch: RFC 8461 §3.3 ----------------------------------------------------------------------
def padded(size: int) -> bytes:
    """A valid policy of exactly `size` bytes, padded with unknown-field lines."""
    body = GOOD.encode()
    while len(body) < size:
        room = size - len(body) - len("p: \r\n")
        body += b"p: " + b"x" * max(1, min(room, 1000)) + b"\r\n"
    assert len(body) == size
    return body


GB = GOOD.encode()


@cases(
    "status, content_type, body, redirected, expected",
    ("F-03 200", 200, "text/plain", GB, False, None),
    ("F-03 200 after redirect", 200, "text/plain", GB, True, FetchError),
    ("F-03 301", 301, "text/plain", GB, False, FetchError),
    ("F-03 302", 302, "text/plain", GB, False, FetchError),
    ("F-03 307", 307, "text/plain", GB, False, FetchError),
    ("F-03 308", 308, "text/plain", GB, False, FetchError),
    ("F-03 201", 201, "text/plain", GB, False, FetchError),
    ("F-03 204", 204, "text/plain", b"", False, FetchError),
    ("F-03 206", 206, "text/plain", GB, False, FetchError),
    ("F-03 304", 304, "text/plain", GB, False, FetchError),
    ("F-03 404", 404, "text/plain", GB, False, FetchError),
    ("F-03 500", 500, "text/plain", GB, False, FetchError),
    ("F-03 503", 503, "text/plain", GB, False, FetchError),
    ("F-05 charset", 200, "text/plain; charset=utf-8", GB, False, None),
    ("F-05 any case", 200, "TEXT/Plain ; Charset=US-ASCII", GB, False, None),
    ("F-05 other params", 200, "text/plain;format=flowed;delsp=yes", GB, False, None),
    ("F-05 text/html", 200, "text/html", GB, False, FetchError),
    ("F-05 text/html charset", 200, "text/html; charset=utf-8", GB, False, FetchError),
    ("F-05 missing", 200, None, GB, False, FetchError),
    ("F-05 empty", 200, "", GB, False, FetchError),
    ("F-05 octet-stream", 200, "application/octet-stream", GB, False, FetchError),
    ("F-05 text/plainx", 200, "text/plainx", GB, False, FetchError),
    ("F-05 text/*", 200, "text/*", GB, False, FetchError),
    ("F-06 64 KiB", 200, "text/plain", padded(65536), False, None),
    ("F-06 64 KiB + 1", 200, "text/plain", padded(65537), False, FetchError),
    ("F-06 1 MiB", 200, "text/plain", padded(1 << 20), False, FetchError),
    ("P-07 html with 200", 200, "text/plain", b"<html><body>hi</body></html>", False, PolicySyntax),
    ("P-02 invalid with 200", 200, "text/plain", b"version: STSv1\n", False, PolicySyntax),
)
def test_validate_fetch(status: int, content_type: str | None, body: bytes, redirected: bool,
                        expected: type[PolicyError] | None) -> None:
    if expected is None:
        assert validate_fetch(status, content_type, body, redirected).mx == ENFORCE.mx
    else:
        with pytest.raises(expected):
            validate_fetch(status, content_type, body, redirected)


# ---- errors: one per phase, each with its TLS-RPT result type (R-04) ------------------------
@cases(
    "error, result_type, policy_type",
    ("R-04 no record", NoRecord("x"), None, "no-policy-found"),
    ("R-04 multiple", MultipleRecords("x"), "sts-policy-fetch-error", "sts"),
    ("R-04 record syntax", RecordSyntax("x"), "sts-policy-fetch-error", "sts"),
    ("R-04 fetch", FetchError("x"), "sts-policy-fetch-error", "sts"),
    ("R-04 fetch webpki", FetchError("x", webpki=True), "sts-webpki-invalid", "sts"),
    ("R-04 policy syntax", PolicySyntax("x"), "sts-policy-invalid", "sts"),
)
def test_error_result_types(error: PolicyError, result_type: str | None, policy_type: str) -> None:
    assert isinstance(error, LabError)
    assert (error.result_type, error.policy_type) == (result_type, policy_type)


def test_errors_quote_the_value() -> None:
    with pytest.raises(RecordSyntax, match=r"'2026-10-04'"):
        parse_txt_records(["v=STSv1; id=2026-10-04"])
    with pytest.raises(PolicySyntax, match=r"'bogus'"):
        parse_policy(lines(V, "mode: bogus", MX, AGE))


# ---- MX matching: RFC 8461 §4.1 ----------------------------------------------------------------
@cases(
    "pattern, host, expected",
    ("M-01 exact", "mail.example.test", "mail.example.test", True),
    ("M-01 case", "mail.example.test", "MAIL.Example.TEST", True),
    ("M-01 pattern case", "MAIL.EXAMPLE.TEST", "mail.example.test", True),
    ("M-01 host trailing dot", "mail.example.test", "mail.example.test.", True),
    ("M-01 pattern trailing dot", "mail.example.test.", "mail.example.test", True),
    ("M-01 two trailing dots", "mail.example.test", "mail.example.test..", False),
    ("M-01 mail.example.test.evil", "mail.example.test", "mail.example.test.evil", False),
    ("M-01 xmail.example.test", "mail.example.test", "xmail.example.test", False),
    ("M-01 subdomain of exact", "mail.example.test", "a.mail.example.test", False),
    ("M-01 shorter", "mail.example.test", "mail.example.tes", False),
    ("M-01 wildcard one label", "*.example.test", "mail.example.test", True),
    ("M-01 wildcard case dot", "*.example.test", "MAIL.EXAMPLE.TEST.", True),
    ("M-01 wildcard not bare", "*.example.test", "example.test", False),
    ("M-01 wildcard not two labels", "*.example.test", "a.b.example.test", False),
    ("M-01 wildcard empty label", "*.example.test", ".example.test", False),
    ("M-01 wildcard evil suffix", "*.example.test", "mail.example.test.evil", False),
    ("M-01 wildcard glued", "*.example.test", "mailexample.test", False),
    # RFC 6125 §6.4.3 (M-01): "*" is the pattern's wildcard; an MX host spelt "*.x" is no host name
    ("M-01 wildcard literal host", "*.example.test", "*.example.test", False),
    ("M-01 star label in host", "mail.example.test", "*.example.test", False),
    ("M-01 no partial label", "x*.example.test", "xmail.example.test", False),
    ("M-01 star glued", "*mail.example.test", "xmail.example.test", False),
    ("M-01 bare star", "*", "mail", False),
    ("M-01 non-ascii fold", "mail.example.test", "MA\u0130L.example.test", False),
)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


@cases(
    "host, expected",
    ("M-02 first pattern", "mx1.example.test", True),
    ("M-02 wildcard pattern", "b1.backup.example.test", True),
    ("M-02 neither", "mx2.example.test", False),
    ("M-02 attacker", "mx1.example.test.attacker.test", False),
)
def test_policy_matches(host: str, expected: bool) -> None:
    policy = pol("enforce", "mx1.example.test", "*.backup.example.test")
    assert policy.matches(host) is expected


@cases(
    "policy, expected",
    ("A-01 enforce", ENFORCE, True),
    ("A-04 testing", pol("testing", "a.test"), False),
    ("A-04 none", pol("none"), False),
    ("A-05 no or invalid policy", None, False),
)
def test_tls_required(policy: Policy | None, expected: bool) -> None:
    assert tls_required(policy) is expected


# ---- discovery outcome, decision table and cache: RFC 8461 §3.3, §5.1 ------------------------
@cases(
    "records, expected",
    ("D-09 lookup failed", None, TxtFailure.LOOKUP_FAILED),
    ("D-01 nxdomain", [], TxtFailure.NO_RECORD),
    ("D-03 not sts", ["v=STSv10; id=1"], TxtFailure.NO_RECORD),
    ("D-02 multiple", ["v=STSv1; id=1", "v=STSv1; id=2"], TxtFailure.MULTIPLE),
    ("D-04 syntax", ["v=STSv1; id=2026-10-04"], TxtFailure.SYNTAX),
    ("D-01 valid", ["v=STSv1; id=1"], TxtRecord(id="1")),
)
def test_discover(records: list[str] | None, expected: object) -> None:
    assert discover(records) == expected


DAY = 86400
OLD = CachedPolicy(id="old", policy=pol("enforce", "mx.example.test", max_age=DAY), fetched_at=0)
NEW = TxtRecord(id="new")
SAME = TxtRecord(id="old")
F = TxtFailure


@cases(
    "txt, cached, now, allowed, action, policy, fetch_id",
    ("F-07 cold: fetch, fallback none", NEW, None, 10, True, "fetch", None, "new"),
    ("K-01 same id: no fetch", SAME, OLD, 10, True, "use-cached", OLD.policy, None),
    ("K-01 new id: fetch before max_age", NEW, OLD, 10, True, "fetch", OLD.policy, "new"),
    ("K-02 same id but expired: fetch", SAME, OLD, DAY, True, "fetch", None, "old"),
    ("K-02 last live second", SAME, OLD, DAY - 1, True, "use-cached", OLD.policy, None),
    ("D-01 no record, no cache", F.NO_RECORD, None, 10, True, "no-policy", None, None),
    ("D-09 no record, live cache", F.NO_RECORD, OLD, 10, True, "use-cached", OLD.policy, None),
    ("K-02 no record, expired cache", F.NO_RECORD, OLD, DAY, True, "no-policy", None, None),
    ("D-02 multiple, no cache: no fetch", F.MULTIPLE, None, 10, True, "no-policy", None, None),
    ("D-02 multiple, live cache", F.MULTIPLE, OLD, 10, True, "use-cached", OLD.policy, None),
    ("D-04 bad record, no cache", F.SYNTAX, None, 10, True, "no-policy", None, None),
    ("D-09 bad record, live cache", F.SYNTAX, OLD, 10, True, "use-cached", OLD.policy, None),
    ("D-09 servfail, no cache", F.LOOKUP_FAILED, None, 10, True, "no-policy", None, None),
    ("D-09 servfail, live cache", F.LOOKUP_FAILED, OLD, 10, True, "use-cached", OLD.policy, None),
    ("K-02 servfail, expired cache", F.LOOKUP_FAILED, OLD, DAY, True, "no-policy", None, None),
    ("F-09 backoff, no cache", NEW, None, 10, False, "no-policy", None, None),
    ("F-09 backoff, live cache", NEW, OLD, 10, False, "use-cached", OLD.policy, None),
    ("F-09 backoff, same id", SAME, OLD, 10, False, "use-cached", OLD.policy, None),
)
def test_decide(txt: TxtRecord | TxtFailure, cached: CachedPolicy | None, now: float,
                allowed: bool, action: str, policy: Policy | None, fetch_id: str | None) -> None:
    d = decide(txt, cached, now, fetch_allowed=allowed)
    assert (d.action, d.policy, d.fetch_id) == (action, policy, fetch_id)
    assert d.why


FRESH = pol("testing", "mx.example.test")


@cases(
    "cached, fetched, expected",
    ("F-07 fails, nothing cached", None, FetchError("refused"), None),
    ("F-07 invalid, nothing cached", None, PolicySyntax("html"), None),
    ("F-07 bad cert, nothing cached", None, FetchError("cert", webpki=True), None),
    ("F-08 fails, live cache", OLD, FetchError("refused"), OLD.policy),
    ("F-08 invalid, live cache", OLD, PolicySyntax("html"), OLD.policy),
    ("K-02 fails, expired cache", CachedPolicy("old", OLD.policy, -DAY), FetchError("x"), None),
    ("K-01 success replaces", OLD, FRESH, FRESH),
    ("F-07 success, cold", None, FRESH, FRESH),
)
def test_after_fetch(cached: CachedPolicy | None, fetched: Policy | PolicyError,
                     expected: Policy | None) -> None:
    d = decide(NEW, cached, 10)
    assert d.action == "fetch"
    assert after_fetch(d, fetched) == expected


def test_cache_expiry() -> None:  # K-02: expired when fetched_at + max_age <= now
    cache = PolicyCache()
    cache.store("example.test", "1", pol("enforce", "mx.example.test", max_age=100), now=1000)
    assert cache.lookup("example.test", 1099) is not None
    assert cache.lookup("example.test", 1100) is None


@cases(
    "name, found",
    ("K-04 same domain", "example.test", True),
    ("K-04 case and dot", "EXAMPLE.Test.", True),
    ("K-04 subdomain", "sub.example.test", False),
    ("K-04 parent", "test", False),
    ("K-04 other domain same MX", "other.test", False),
)
def test_cache_keyed_by_policy_domain(name: str, found: bool) -> None:
    cache = PolicyCache()
    cache.store("example.test", "1", pol("enforce", "mx.shared.test"), now=0)
    assert (cache.lookup(name, 1) is not None) is found


@cases(
    "domain, id, now, allowed",
    ("F-09 at failure", "example.test", "1", 1000, False),
    ("F-09 299 s later", "example.test", "1", 1299, False),
    ("F-09 300 s later", "example.test", "1", 1300, True),
    ("F-09 other id", "example.test", "2", 1000, True),
    ("F-09 other domain", "other.test", "1", 1000, True),
)
def test_may_fetch(domain: str, id: str, now: float, allowed: bool) -> None:
    cache = PolicyCache()
    assert cache.may_fetch(domain, id, 0)
    cache.record_fetch_failure("example.test", "1", 1000)
    assert cache.may_fetch(domain, id, now) is allowed


def test_cache_transcript() -> None:
    """One domain through a sender's life: every step names the row of the table it hits."""
    cache, d = PolicyCache(), "example.test"
    first, second = pol("enforce", "mx.example.test", max_age=DAY), FRESH
    step = cache.decide(d, TxtRecord("a"), 0)  # F-07: cold, fetch
    assert step.action == "fetch" and cache.settle(d, step, first, 0) == first
    assert cache.decide(d, TxtRecord("a"), 60).action == "use-cached"  # K-01: same id
    step = cache.decide(d, TxtRecord("b"), 120)  # K-01: new id, fetch
    assert step.fetch_id == "b" and cache.settle(d, step, FetchError("reset"), 120) == first  # F-08
    step = cache.decide(d, TxtRecord("b"), 300)  # F-09: 180 s after the failure: no fetch
    assert (step.action, step.policy) == ("use-cached", first)
    step = cache.decide(d, TxtRecord("b"), 420)  # F-09: 300 s later, fetch again
    assert step.action == "fetch" and cache.settle(d, step, second, 420) == second
    assert cache.lookup(d, 421) == CachedPolicy("b", second, 420)
    assert cache.decide(d, TxtFailure.NO_RECORD, 1000).policy == second  # D-09
    assert cache.decide(d, TxtFailure.MULTIPLE, 1000).policy == second  # D-02 with a cache
    assert cache.decide(d, TxtFailure.NO_RECORD, 420 + 604800).action == "no-policy"  # K-02


def test_settle_needs_a_fetch() -> None:
    cache = PolicyCache()
    with pytest.raises(ValueError):
        cache.settle("example.test", decide(TxtFailure.NO_RECORD, None, 0), FRESH, 0)


# ---- purity (STYLE habit 1) -------------------------------------------------------------------
@cases(
    "module",
    ("policy", "lab/core/policy.py"),
    ("policycache", "lab/core/policycache.py"),
)
def test_pure_imports(module: str) -> None:
    assert not imported_roots(module) & {"asyncio", "socket", "ssl"}


def test_pure_imports_transitively() -> None:
    assert loaded_by_importing("downgrade_lab.core.policy", "downgrade_lab.core.policycache",
                               among=frozenset({"asyncio", "socket", "ssl"})) == set()


@pytest.mark.parametrize(("budget", "timeout"), [
    (0.0, 3.0), (4.0, 3.0), (10.0, 4.0), (20.0, 8.0), (150.0, 60.0), (600.0, 60.0)])
def test_the_reference_fetch_timeout_takes_a_share_of_the_budget_within_bounds(
        budget: float, timeout: float) -> None:
    """F-06: about a minute at most; 40 % of the step's time, so a failed fetch still leaves
    time to deliver with no policy (F-07); never under 3 s."""
    from downgrade_lab.senders.builtin.reference import fetch_timeout

    assert fetch_timeout(budget) == timeout
