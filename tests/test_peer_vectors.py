"""Peer vectors: cases taken from other MTA-STS and TLS-RPT implementations' own test suites, and
run against the lab's pure functions (downgrade_lab.core.policy, .tlsrpt, .tlsrptcheck).

One line per case; each group names the repository and path it comes from. The last field of a
row is empty where the lab agrees with the peer; where the lab deliberately decides otherwise,
it says what the peer does and which RFC sentence decides (and the case is "room" where the RFC
does not decide, docs/conformance.md "Where the RFC leaves room"). A good case stands beside its
bad twins, as in the peers' own tables.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from typing import Any

import pytest

from downgrade_lab.core.policy import (
    MultipleRecords,
    NoRecord,
    PolicySyntax,
    RecordSyntax,
    mx_matches,
    parse_policy,
    parse_txt_records,
    validate_fetch,
)
from downgrade_lab.core.tlsrpt import (
    MultipleTlsRptRecords,
    NoTlsRptRecord,
    TlsRptSyntax,
    parse_tlsrpt_records,
)
from downgrade_lab.core.tlsrptcheck import decode_report, validate_report


def cases(names: str, *rows: tuple[object, ...]) -> pytest.MarkDecorator:
    """`parametrize` whose rows start with their readable id. A row's last field, where the lab
    differs from the peer, must say what decides: an RFC, or that the RFC leaves room."""
    for row in rows:
        differs = row[-1]
        assert isinstance(differs, str) and (not differs or "RFC" in differs or "room" in differs), row[0]
    return pytest.mark.parametrize(names, [r[1:] for r in rows], ids=[str(r[0]) for r in rows])


# Why the lab differs, as the rows say it (one sentence each).
ABNF_ID = 'RFC 8461 §3.1 sts-id = %s"id=" 1*32(ALPHA / DIGIT)'
CASE = 'RFC 8461 §3.1 sts-version = %s"v=STSv1": case-sensitive (RFC 7405)'
NO_TRAILING_WSP = "RFC 8461 §3.1 sts-record: WSP only inside sts-field-delim (*WSP \";\" *WSP)"
ONE_TRAILING_SEP = "RFC 8461 §3.1 sts-record ends with at most one [sts-field-delim]"
MAX_AGE_ROOM = 'room (P-06): RFC 8461 §3.2 gives "a maximum value of 31557600", not what to do above it'
A_LABEL = ('RFC 8461 §3.2: the mx value "MUST specify the Punycode-encoded A-label [RFC3492] to '
           'match against, and not the Unicode-encoded U-label"')
WILDCARD = ('RFC 8461 §4.1: "*" "may only be used to match the entire left-most label"; '
            'sts-policy-mx-value = ["*."] Domain')
POLICY_ABNF = "RFC 8461 §3.2 sts-policy-record: every line is an sts-policy-field, no leading WSP"
MAX_AGE_ABNF = "RFC 8461 §3.2 sts-policy-max-age-value = 1*10(DIGIT), and max_age is required"
TRAILING_DOT = ('room (M-01): the lab reads "x." as the absolute name; mx/trailing-dot tolerates '
                "the strict reading (an RFC 5321 Domain has no trailing dot)")
RUA_ROOM = ("room: RFC 8460 §3 says nothing of a repeated rua; the lab reports to every URI "
            "named, as mox does")
TLSRPT_WSP = "RFC 8460 §3 tlsrpt-record: WSP only in field-delim or around the commas"
OFFSET = "RFC 3339 §5.6: full-time = partial-time time-offset; RFC 8460 §4.4 date-time is RFC 3339"


# ---- TXT records (MTA-STS): RFC 8461 §3.1 ---------------------------------------------------
@cases(
    "records, expected, differs",
    # mjl-/mox mtasts/parse_test.go (TestRecord)
    ("mox good basic", ["v=STSv1; id=20160831085700Z;"], "20160831085700Z", ""),
    ("mox good wsp around ;", ["v=STSv1; \t id=20160831085700Z  \t;"], "20160831085700Z", ""),
    ("mox good short id", ["v=STSv1; id=a"], "a", ""),
    ("mox good extensions", ["v=STSv1; id=a; more=a; ext=2"], "a", ""),
    ("mox bad v=STSv0", ["v=STSv0"], NoRecord, ""),
    ("mox bad v=STSv10", ["v=STSv10"], NoRecord, ""),
    ("mox bad v=STSv2", ["v=STSv2"], NoRecord, ""),
    ("mox bad version alone", ["v=STSv1"], NoRecord, ""),
    ("mox bad no id", ["v=STSv1;"], RecordSyntax, ""),
    ("mox bad ext but no id", ["v=STSv1; ext=1"], RecordSyntax, ""),
    ("mox bad empty id", ["v=STSv1; id="], RecordSyntax, ""),
    ("mox bad 33-char id", ["v=STSv1; id=012345678901234567890123456789012"], RecordSyntax, ""),
    ("mox bad id with dash", ["v=STSv1; id=test-123"], RecordSyntax, ""),
    ("mox bad empty ext value", ["v=STSv1; id=a; more="], RecordSyntax, ""),
    ("mox bad 33-char ext name", ["v=STSv1; id=a; a12345678901234567890123456789012=1"], RecordSyntax, ""),
    ("mox bad ext name 1%", ["v=STSv1; id=a; 1%=a"], RecordSyntax, ""),
    ("mox bad ext test==", ["v=STSv1; id=a; test=="], RecordSyntax, ""),
    ("mox bad ;;", ["v=STSv1; id=a;;"], RecordSyntax, ""),
    # postalsys/mailauth test/mta-sts/txt-record-test.js (strict mode; lax differs where noted)
    ("mailauth strings joined", [["v=STSv1; id=2016", "0831085700Z;"]], "20160831085700Z", ""),
    ("mailauth first id of two", ["v=STSv1; id=first; id=second"], "first", ""),
    ("mailauth ext a:b", ["v=STSv1; id=abc; ext=a:b"], "abc", ""),
    ("mailauth ext url before id", ["v=STSv1; ext=https://x.example; id=abc"], "abc", ""),
    ("mailauth ext (x", ["v=STSv1; ext=(x; id=abc"], "abc", ""),
    ("mailauth ext quote", ['v=STSv1; ext="x; id=abc'], "abc", ""),
    ("mailauth ext backslash", ["v=STSv1; id=abc; ext=a\\b"], "abc", ""),
    ("mailauth discard v=STSv1-x", ["v=STSv1-x; id=a", "v=STSv1; id=good"], "good", ""),
    ("mailauth discard bare version", ["v=STSv1", "v=STSv1; id=good"], "good", ""),
    ("mailauth discard v=STSv1.1", ["v=STSv1.1; id=a", "v=STSv1; id=good"], "good", ""),
    ("mailauth discard id first", ["id=a; v=STSv1", "v=STSv1; id=good"], "good", ""),
    ("mailauth discard lower case", ["v=stsv1; id=a", "v=STSv1; id=good"], "good", ""),
    ("mailauth two valid", ["v=STSv1; id=a", "v=STSv1; id=b"], MultipleRecords, ""),
    ("mailauth v=STSv1 id=abc", ["v=STSv1 id=abc"], NoRecord, ""),
    ("mailauth lower case version", ["v=stsv1; id=abc"], NoRecord, "mailauth lax accepts; " + CASE),
    ("mailauth leading spaces", ["  v=STSv1; id=abc"], NoRecord, "mailauth lax accepts; RFC 8461 §3.1: the record MUST begin with sts-version"),
    ("mailauth id with dashes", ["v=STSv1; id=2016-08-31"], RecordSyntax, "mailauth lax accepts; " + ABNF_ID),
    ("mailauth id with dot", ["v=STSv1; id=1.2"], RecordSyntax, ""),
    ("mailauth id with space", ["v=STSv1; id=abc def"], RecordSyntax, "mailauth lax accepts; " + ABNF_ID),
    ("mailauth id trailing space", ["v=STSv1; id=abc "], RecordSyntax, ""),
    ("mailauth empty field", ["v=STSv1; ; id=abc"], RecordSyntax, ""),
    ("mailauth ext name _ext", ["v=STSv1; id=abc; _ext=x"], RecordSyntax, ""),
    ("mailauth ext value with space", ["v=STSv1; id=abc; ext=a b"], RecordSyntax, ""),
    ("mailauth ID is not id", ["v=STSv1; ID=abc"], RecordSyntax, ""),
    ("mailauth ext non-ascii", ["v=STSv1; id=abc; ext=\u00fc"], RecordSyntax, ""),
    ("mailauth 32-char id", ["v=STSv1; id=" + "a" * 32], "a" * 32, ""),
    ("mailauth wsp before ;", ["v=STSv1 ;id=abc ; "], "abc", ""),
    ("mailauth tab separators", ["v=STSv1;\tid=abc;\text.name-1_x=value"], "abc", ""),
    ("mailauth later bad duplicate", ["v=STSv1; id=abc; id=x-y"], "abc", ""),
    ("mailauth first bad duplicate", ["v=STSv1; id=x-y; id=abc"], RecordSyntax, ""),
    # albertito/chasquid internal/sts/sts_test.go (TestHasSTSRecord)
    ("chasquid among others", ["abc", "v=STSv1; id=blah;"], "blah", ""),
    ("chasquid only others", ["abc", "def"], NoRecord, ""),
    ("chasquid none", [], NoRecord, ""),
    # domainaware/checkdmarc tests/test_mta_sts.py
    ("checkdmarc basic", ["v=STSv1; id=20240101T010101"], "20240101T010101", ""),
    ("checkdmarc unknown tag", ["v=STSv1; id=abc; extension=foo"], "abc", ""),
    ("checkdmarc no id", ["v=STSv1;"], RecordSyntax, ""),
    ("checkdmarc id too long", ["v=STSv1; id=" + "a" * 33], RecordSyntax, ""),
    ("checkdmarc v =", ["v =STSv1; id=abc"], NoRecord, ""),
    ("checkdmarc v= space", ["v= STSv1; id=abc"], NoRecord, ""),
    ("checkdmarc id =", ["v=STSv1; id =abc"], RecordSyntax, ""),
    ("checkdmarc V=", ["V=STSv1; id=abc"], NoRecord, ""),
    ("checkdmarc duplicate id", ["v=STSv1; id=foo; id=bar"], "foo", ""),
    ("checkdmarc wsp before ;", ["v=STSv1 ; id=abc123"], "abc123", ""),
    ("checkdmarc spf", ["v=spf1 -all"], NoRecord, ""),
    # Snawoot/postfix-mta-sts-resolver tests/test_utils.py (test_parse_mta_sts_record)
    ("resolver trailing ;", ["v=STSv1; id=20160831085700Z;"], "20160831085700Z", ""),
    ("resolver no spaces", ["v=STSv1;id=20160831085700Z;"], "20160831085700Z", ""),
    ("resolver no trailing ;", ["v=STSv1; id=20160831085700Z"], "20160831085700Z", ""),
    ("resolver bare", ["v=STSv1;id=20160831085700Z"], "20160831085700Z", ""),
    ("resolver trailing spaces", ["v=STSv1;        id=20160831085700Z   "], RecordSyntax, "resolver accepts; " + NO_TRAILING_WSP),
    ("resolver ;;;", ["v=STSv1; id=20160831085700Z;;;"], RecordSyntax, "resolver accepts; " + ONE_TRAILING_SEP),
    ("resolver empty", [""], NoRecord, ""),
    # mimecast/mta-sts src/test/java/com/mimecast/mtasts/assets/StsRecordTest.java
    ("mimecast valid", ["v=STSv1; id=19840507T234501;"], "19840507T234501", ""),
    ("mimecast no id", ["v=STSv1;"], RecordSyntax, ""),
    ("mimecast blank", [""], NoRecord, ""),
    ("mimecast no version", ["id=19840507T234501;"], NoRecord, ""),
    ("mimecast v=STSv", ["v=STSv;"], NoRecord, ""),
    ("mimecast v-STSv1", ["v-STSv1 id=19840507T234501"], NoRecord, ""),
    ("mimecast no ;", ["v=STSv1 id="], NoRecord, ""),
    ("mimecast v=STSv2", ["v=STSv2; id=19840507T234501;"], NoRecord, ""),
    # stalwartlabs/mail-auth src/mta_sts/parse.rs (mta_sts_record_parse)
    ("stalwart rfc example", ["v=STSv1; id=20160831085700Z;"], "20160831085700Z", ""),
    ("stalwart no trailing ;", ["v=STSv1; id=20190429T010101"], "20190429T010101", ""),
)
def test_txt_records(records: list[Any], expected: object, differs: str) -> None:
    joined = ["".join(r) if isinstance(r, list) else r for r in records]
    if isinstance(expected, type):
        with pytest.raises(expected):
            parse_txt_records(joined)
    else:
        assert parse_txt_records(joined).id == expected


# ---- policy bodies: RFC 8461 §3.2 ------------------------------------------------------------
def P(mode: str, *mx: str, max_age: int) -> tuple[str, tuple[str, ...], int]:
    return (mode, mx, max_age)


BASE = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
GOOD_BASE = P("enforce", "mail.example.com", max_age=604800)
MC = "version: STSv1\r\nmode: {mode}\r\nmx: service-alpha-inbound-a.mimecast.com\r\n"


@cases(
    "body, expected, differs",
    # mjl-/mox mtasts/parse_test.go (TestParsePolicy)
    ("mox good rfc-like", "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmx: mx.backup-example.com\nmax_age: 1296000\n", P("testing", "mx1.example.com", "mx2.example.com", "mx.backup-example.com", max_age=1296000), ""),
    ("mox good trailing wsp", "version: STSv1\nmode: enforce\t\nmx: *.example.com \nmax_age: 0 \n", P("enforce", "*.example.com", max_age=0), ""),
    ("mox good no space, ext", "version:STSv1\r\nmode:\tenforce\r\nmx:  \t\t *.example.com\nmax_age: 1\nmore:ext e  ns ion", P("enforce", "*.example.com", max_age=1), ""),
    ("mox bad empty", "", PolicySyntax, ""),
    ("mox bad STSv0", "version:STSv0\nmode:none\nmax_age:0", PolicySyntax, ""),
    ("mox bad STSv10", "version:STSv10\nmode:none\nmax_age:0", PolicySyntax, ""),
    ("mox bad STSv2", "version:STSv2\nmode:none\nmax_age:0", PolicySyntax, ""),
    ("mox bad no mode", "version:STSv1\nmax_age:0\nmx:example.com", PolicySyntax, ""),
    ("mox bad no max_age", "version:STSv1\nmode:none", PolicySyntax, ""),
    ("mox bad enforce no mx", "version:STSv1\nmax_age:0\nmode:enforce", PolicySyntax, ""),
    ("mox bad testing no mx", "version:STSv1\nmax_age:0\nmode:testing", PolicySyntax, ""),
    ("mox bad no version", "max_age:0\nmode:none", PolicySyntax, ""),
    ("mox bad max_age 11 digits", "version:STSv1\nmode:none\nmax_age:01234567890", PolicySyntax, ""),
    ("mox bad mode", "version:STSv1\nmode:bad\nmax_age:1", PolicySyntax, ""),
    ("mox bad max_age a", "version:STSv1\nmode:none\nmax_age:a", PolicySyntax, ""),
    ("mox bad empty mx", "version:STSv1\nmode:enforce\nmax_age:0\nmx:", PolicySyntax, ""),
    ("mox bad *.*.example", "version:STSv1\nmode:enforce\nmax_age:0\nmx:*.*.example", PolicySyntax, ""),
    ("mox bad **.example", "version:STSv1\nmode:enforce\nmax_age:0\nmx:**.example", PolicySyntax, ""),
    ("mox bad **.example-", "version:STSv1\nmode:enforce\nmax_age:0\nmx:**.example-", PolicySyntax, ""),
    ("mox bad test.example-", "version:STSv1\nmode:enforce\nmax_age:0\nmx:test.example-", PolicySyntax, ""),
    ("mox bad empty ext", "version:STSv1\nmode:none\nmax_age:0\next:", PolicySyntax, ""),
    ("mox bad long ext name", "version:STSv1\nmode:none\nmax_age:0\na12345678901234567890123456789012:123", PolicySyntax, ""),
    ("mox bad _bad ext", "version:STSv1\nmode:none\nmax_age:0\n_bad:test", PolicySyntax, ""),
    ("mox bad u-label mx", "version:STSv1\nmode:none\nmax_age:0\nmx: m\u00f8x.example", PolicySyntax, ""),
    # postalsys/mailauth test/mta-sts/policy-test.js (strict mode; lax differs where noted)
    ("mailauth rfc example", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n", P("enforce", "mail.example.com", "*.example.net", "backupmx.example.com", max_age=604800), ""),
    ("mailauth LF", BASE.replace("\r\n", "\n"), GOOD_BASE, ""),
    ("mailauth no final newline", BASE.strip(), GOOD_BASE, ""),
    ("mailauth first mode of two", BASE + "mode: none\r\n", GOOD_BASE, ""),
    ("mailauth testing then enforce", "version: STSv1\r\nmode: testing\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 60\r\n", P("testing", "a.example", max_age=60), ""),
    ("mailauth first max_age of two", BASE + "max_age: 1\r\n", GOOD_BASE, ""),
    ("mailauth later STSv2 ignored", BASE + "version: STSv2\r\n", GOOD_BASE, ""),
    ("mailauth first STSv2 counts", "version: STSv2\r\n" + BASE, PolicySyntax, ""),
    ("mailauth no mode", BASE.replace("mode: enforce\r\n", ""), PolicySyntax, ""),
    ("mailauth no version", BASE.replace("version: STSv1\r\n", ""), PolicySyntax, ""),
    ("mailauth stsv1", BASE.replace("STSv1", "stsv1"), PolicySyntax, ""),
    ("mailauth mode reject", BASE.replace("enforce", "reject"), PolicySyntax, ""),
    ("mailauth no max_age", BASE.replace("max_age: 604800\r\n", ""), PolicySyntax, ""),
    ("mailauth max_age 31557601", BASE.replace("604800", "31557601"), P("enforce", "mail.example.com", max_age=31557600), "mailauth rejects, lab clamps: " + MAX_AGE_ROOM),
    ("mailauth enforce no mx", BASE.replace("mx: mail.example.com\r\n", ""), PolicySyntax, ""),
    ("mailauth html", "<html><body>version: STSv1<br>\nmode: enforce\nmx: a.example\nmax_age: 60</body></html>", PolicySyntax, ""),
    ("mailauth none without mx", BASE.replace("mx: mail.example.com\r\n", "").replace("enforce", "none"), P("none", max_age=604800), ""),
    ("mailauth max_age 0", BASE.replace("604800", "0"), P("enforce", "mail.example.com", max_age=0), ""),
    ("mailauth max_age 31557600", BASE.replace("604800", "31557600"), P("enforce", "mail.example.com", max_age=31557600), ""),
    ("mailauth line without colon", BASE + "foo_bar: baz\r\nthis is not a field\r\n", PolicySyntax, "mailauth ignores the line; " + POLICY_ABNF),
    ("mailauth unknown key", BASE + "foo_bar: baz\r\n", GOOD_BASE, ""),
    ("mailauth ENFORCE", BASE.replace("enforce", "ENFORCE"), PolicySyntax, "mailauth lax accepts; RFC 8461 §3.2 mode values are %s strings"),
    ("mailauth MODE:", BASE.replace("mode:", "MODE:"), PolicySyntax, ""),
    ("mailauth mode :", BASE.replace("mode:", "mode :"), PolicySyntax, ""),
    ("mailauth max_age 1e3", BASE.replace("604800", "1e3"), PolicySyntax, ""),
    ("mailauth max_age 0x10", BASE.replace("604800", "0x10"), PolicySyntax, ""),
    ("mailauth max_age 12.5", BASE.replace("604800", "12.5"), PolicySyntax, ""),
    ("mailauth max_age +5", BASE.replace("604800", "+5"), PolicySyntax, ""),
    ("mailauth max_age -0", BASE.replace("604800", "-0"), PolicySyntax, ""),
    ("mailauth max_age empty", BASE.replace("604800", ""), PolicySyntax, ""),
    ("mailauth max_age 11 digits", BASE.replace("604800", "00000000060"), PolicySyntax, ""),
    ("mailauth max_age 5 5", BASE.replace("604800", " 5 5"), PolicySyntax, ""),
    ("mailauth max_age 10 digits", BASE.replace("604800", "0000000060"), P("enforce", "mail.example.com", max_age=60), ""),
    ("mailauth mx foo*", BASE.replace("mail.example.com", "foo*.example.com"), PolicySyntax, ""),
    ("mailauth mx *.*", BASE.replace("mail.example.com", "*.*.example.com"), PolicySyntax, ""),
    ("mailauth mx trailing dot", BASE.replace("mail.example.com", "mail.example.com."), P("enforce", "mail.example.com.", max_age=604800), "mailauth strict rejects; " + TRAILING_DOT),
    ("mailauth mx u-label", BASE.replace("mail.example.com", "m\u00fcnchen.example"), PolicySyntax, ""),
    ("mailauth mx leading hyphen", BASE.replace("mail.example.com", "-mail.example.com"), PolicySyntax, ""),
    ("mailauth mx underscore", BASE.replace("mail.example.com", "mail_x.example.com"), PolicySyntax, ""),
    ("mailauth mx upper case", BASE.replace("mail.example.com", "*.EXAMPLE.com"), P("enforce", "*.EXAMPLE.com", max_age=604800), ""),
    ("mailauth mx a-label", BASE.replace("mail.example.com", "xn--mnchen-3ya.example"), P("enforce", "xn--mnchen-3ya.example", max_age=604800), ""),
    ("mailauth trailing wsp", "version: STSv1 \r\nmode:\tenforce\t\r\nmx:mail.example.com\r\nmax_age: 60  \r\n", P("enforce", "mail.example.com", max_age=60), ""),
    # albertito/chasquid internal/sts/sts_test.go (TestParsePolicy, TestCheckPolicy)
    ("chasquid indented policy", "\n  version: STSv1\n  mode: enforce\n  mx: *.mail.example.com\n  max_age: 123456\n", PolicySyntax, "chasquid trims lines; " + POLICY_ABNF),
    ("chasquid unindented twin", "version: STSv1\nmode: enforce\nmx: *.mail.example.com\nmax_age: 123456\n", P("enforce", "*.mail.example.com", max_age=123456), ""),
    ("chasquid max_age 31557600", "version: STSv1\nmode: none\nmx: mx1\nmax_age: 31557600\n", P("none", "mx1", max_age=31557600), ""),
    ("chasquid max_age 31557601", "version: STSv1\nmode: none\nmx: mx1\nmax_age: 31557601\n", P("none", "mx1", max_age=31557600), "chasquid rejects, lab clamps: " + MAX_AGE_ROOM),
    ("chasquid STSv99", "version: STSv99\nmode: enforce\nmx: *.mail.version99\nmax_age: 999\n", PolicySyntax, ""),
    ("chasquid mode blah", "version: STSv1\nmode: blah\nmx: mx1\nmax_age: 1\n", PolicySyntax, ""),
    # domainaware/checkdmarc tests/test_mta_sts.py
    ("checkdmarc crlf", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\nmx: mail.example.com\r\n", P("enforce", "mail.example.com", max_age=86400), ""),
    ("checkdmarc lf", "version: STSv1\nmode: testing\nmax_age: 3600\nmx: *.example.com\n", P("testing", "*.example.com", max_age=3600), ""),
    ("checkdmarc mixed line ends", "version: STSv1\r\nmode: enforce\nmax_age: 86400\r\nmx: mail.example.com\n", P("enforce", "mail.example.com", max_age=86400), ""),
    ("checkdmarc none no max_age", "version: STSv1\r\nmode: none\r\n", PolicySyntax, ""),
    ("checkdmarc max_age -1", "version: STSv1\r\nmode: enforce\r\nmax_age: -1\r\nmx: mail.example.com\r\n", PolicySyntax, ""),
    ("checkdmarc mx not a hostname", "version: STSv1\r\nmode: enforce\r\nmx: not a hostname!\r\nmax_age: 86400\r\n", PolicySyntax, ""),
    ("checkdmarc max_age 86400.5", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400.5\r\nmx: mail.example.com\r\n", PolicySyntax, ""),
    ("checkdmarc max_age 99999999", "version: STSv1\r\nmode: enforce\r\nmax_age: 99999999\r\nmx: mail.example.com\r\n", P("enforce", "mail.example.com", max_age=31557600), "checkdmarc rejects, lab clamps: " + MAX_AGE_ROOM),
    ("checkdmarc duplicate mode", "version: STSv1\r\nmode: enforce\r\nmode: testing\r\nmax_age: 86400\r\nmx: mail.example.com\r\n", P("enforce", "mail.example.com", max_age=86400), ""),
    ("checkdmarc not a pair", "version: STSv1\r\nnot_a_pair\r\n", PolicySyntax, ""),
    ("checkdmarc unknown key", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\nmx: mail.example.com\r\nfoo_ext: bar\r\n", P("enforce", "mail.example.com", max_age=86400), ""),
    ("checkdmarc max_age 1_000", "version: STSv1\r\nmode: none\r\nmax_age: 1_000\r\n", PolicySyntax, ""),
    ("checkdmarc mx mail.*", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\nmx: mail.*.example.com\r\n", PolicySyntax, ""),
    ("checkdmarc mx *example", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\nmx: *example.com\r\n", PolicySyntax, ""),
    ("checkdmarc mx ..--", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\nmx: ..--\r\n", PolicySyntax, ""),
    ("checkdmarc vertical tab", "version: STSv1\x0bmode: none\x0bmax_age: 86400", PolicySyntax, ""),
    # mimecast/mta-sts src/test/java/com/mimecast/mtasts/assets/StsPolicyTest.java
    ("mimecast valid", "version: STSv1\r\nmode: enforce\r\nmx: service-alpha-inbound-a.mimecast.com\r\nmx: service-alpha-inbound-b.mimecast.com\r\nmax_age: 86400\r\n", P("enforce", "service-alpha-inbound-a.mimecast.com", "service-alpha-inbound-b.mimecast.com", max_age=86400), ""),
    ("mimecast partial wildcard", "version: STSv1\r\nmode: enforce\r\nmx: service-alpha-inbound-*.mimecast.com\r\nmax_age: 86400\r\n", PolicySyntax, "mimecast accepts and matches; " + WILDCARD),
    ("mimecast mode none", MC.format(mode="none") + "max_age: 86400\r\n", P("none", "service-alpha-inbound-a.mimecast.com", max_age=86400), 'mimecast calls it invalid; RFC 8461 §3.2: mode is one of "enforce", "testing" or "none"'),
    ("mimecast mode testing", MC.format(mode="testing") + "max_age: 86400\r\n", P("testing", "service-alpha-inbound-a.mimecast.com", max_age=86400), ""),
    ("mimecast mode pretend", MC.format(mode="pretend") + "max_age: 86400\r\n", PolicySyntax, ""),
    ("mimecast mode without colon", "version: STSv1\r\nmode none\r\nmx: service-alpha-inbound-a.mimecast.com\r\nmax_age: 86400\r\n", PolicySyntax, ""),
    ("mimecast no mode", "version: STSv1\r\nmx: service-alpha-inbound-a.mimecast.com\r\nmax_age: 86400\r\n", PolicySyntax, ""),
    ("mimecast enforce no mx", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n", PolicySyntax, ""),
    ("mimecast empty max_age", MC.format(mode="enforce") + "max_age:\r\n", PolicySyntax, "mimecast defaults it; " + MAX_AGE_ABNF),
    ("mimecast no max_age", MC.format(mode="testing"), PolicySyntax, "mimecast defaults it; " + MAX_AGE_ABNF),
)
def test_policy_bodies(body: str, expected: object, differs: str) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            parse_policy(body)
    else:
        policy = parse_policy(body)
        assert (policy.mode, policy.mx, policy.max_age) == expected


# ---- the media type of a fetched policy: RFC 8461 §3.2 (F-05) --------------------------------
@cases(
    "content_type, accepted, differs",
    # Snawoot/postfix-mta-sts-resolver tests/test_utils.py (test_is_plaintext)
    ("resolver text/plain", "text/plain", True, ""),
    ("resolver upper case", "TEXT/PLAIN", True, ""),
    ("resolver mixed case", "TeXT/PlAiN", True, ""),
    ("resolver charset", "text/plain;charset=utf-8", True, ""),
    ("resolver charset upper", "text/plain;charset=UTF-8", True, ""),
    ("resolver charset spaced", "text/plain; charset=UTF-8", True, ""),
    ("resolver space before ;", "text/plain ; charset=UTF-8", True, ""),
    ("resolver octet-stream", "application/octet-stream", False, ""),
    ("resolver octet-stream+text/plain", "application/octet-stream+text/plain", False, ""),
    ("resolver json+text/plain", "application/json+text/plain", False, ""),
    ("resolver text/plain+", "text/plain+", False, ""),
    # albertito/chasquid internal/sts/sts_test.go (TestHTTPGet)
    ("chasquid text/json", "text/json", False, ""),
    ("chasquid invalid/content/type", "invalid/content/type", False, ""),
    # mimecast/mta-sts .../StsPolicyValidatorTest.java (noHeader)
    ("mimecast no header", None, False, ""),
)
def test_media_type(content_type: str | None, accepted: bool, differs: str) -> None:
    body = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n"
    if accepted:
        assert validate_fetch(200, content_type, body).mode == "enforce"
    else:
        with pytest.raises(Exception, match="text/plain required"):
            validate_fetch(200, content_type, body)


# ---- MX patterns: RFC 8461 §4.1 --------------------------------------------------------------
@cases(
    "pattern, host, matches, differs",
    # albertito/chasquid internal/sts/sts_test.go (TestMatchDomain: domain, pattern)
    ("chasquid exact", "lalala", "lalala", True, ""),
    ("chasquid host trailing dot", "a.b", "a.b.", True, ""),
    ("chasquid pattern trailing dot", "a.b.", "a.b", True, ""),
    ("chasquid *.com", "*.com", "abc.com", True, ""),
    ("chasquid inner *", "abc.*.com", "abc.com", False, ""),
    ("chasquid longer pattern", "x.abc.com", "abc.com", False, ""),
    ("chasquid *.*", "*.*.com", "x.abc.com", False, ""),
    ("chasquid inner * two labels", "abc.*.com", "abc.def.com", False, ""),
    ("chasquid same u-label", "\u00f1aca.com", "\u00f1aca.com", True, ""),
    ("chasquid u-label case", "\u00f1aca.com", "\u00d1aca.com", False, "chasquid folds the U-label; " + A_LABEL),
    ("chasquid u-label vs a-label", "x.xn--aca-6ma.com", "x.\u00f1aca.com", False, "chasquid converts to A-labels; " + A_LABEL),
    ("chasquid a-label twin", "x.xn--aca-6ma.com", "x.naca.com", False, ""),
    ("chasquid rfc wildcard", "*.example.com", "mail.example.com", True, ""),
    ("chasquid rfc not bare", "*.example.com", "example.com", False, ""),
    ("chasquid rfc not two labels", "*.example.com", "foo.bar.example.com", False, ""),
    ("chasquid missing * bare", ".aa.b.cc.com", "aa.b.cc.com", False, ""),
    ("chasquid missing * sub", ".aa.b.cc.com", "zz.aa.b.cc.com", False, ""),
    ("chasquid with * sub", "*.aa.b.cc.com", "zz.aa.b.cc.com", True, ""),
    # postalsys/mailauth test/mta-sts/validate-mx-test.js
    ("mailauth wildcard", "*.example.com", "mail.example.com", True, ""),
    ("mailauth wildcard upper", "*.example.com", "MAIL.EXAMPLE.COM", True, ""),
    ("mailauth wildcard bare", "*.example.com", "example.com", False, ""),
    ("mailauth wildcard two", "*.example.com", "foo.bar.example.com", False, ""),
    ("mailauth wildcard three", "*.example.com", "a.b.c.example.com", False, ""),
    ("mailauth wildcard empty label", "*.example.com", ".example.com", False, ""),
    ("mailauth wildcard glued", "*.example.com", "xexample.com", False, ""),
    ("mailauth literal * host", "*.example.com", "*.example.com", False, ""),
    ("mailauth exact", "mail.example.net", "mail.example.net", True, ""),
    ("mailauth exact mixed case", "mail.example.net", "Mail.Example.Net", True, ""),
    ("mailauth exact padded", "mail.example.net", " mail.example.net ", False, "mailauth trims; an MX name (RFC 5321 Domain) has no spaces"),
    ("mailauth exact sub", "mail.example.net", "x.mail.example.net", False, ""),
    ("mailauth empty host", "mail.example.net", "", False, ""),
    ("mailauth wildcard trailing dot", "*.example.com", "mail.example.com.", True, ""),
    ("mailauth exact trailing dot", "mail.example.net", "mail.example.net.", True, ""),
    ("mailauth u-label host", "xn--mnchen-3ya.example", "m\u00fcnchen.example", False, "mailauth converts to A-labels; " + A_LABEL),
    ("mailauth a-label host", "xn--mnchen-3ya.example", "xn--mnchen-3ya.example", True, ""),
    ("mailauth bad pattern foo*", "foo*.example.com", "foo1.example.com", False, ""),
    ("mailauth bad pattern *", "*", "foo", False, ""),
    # domainaware/checkdmarc tests/test_mta_sts.py (testMxInMtaStsPatterns*)
    ("checkdmarc exact", "mail.example.com", "mail.example.com", True, ""),
    ("checkdmarc wildcard", "*.example.com", "mail.example.com", True, ""),
    ("checkdmarc other domain", "*.example.com", "mail.other.com", False, ""),
    ("checkdmarc two labels", "*.example.com", "foo.bar.example.com", False, ""),
    ("checkdmarc evil suffix", "*.example.com", "mail.example.com.evil.com", False, ""),
    ("checkdmarc hyphen prefix", "example.com", "bad-example.com", False, ""),
    ("checkdmarc zero labels", "*.example.com", "example.com", False, ""),
    ("checkdmarc smtp1", "*.example.com", "smtp1.example.com", True, ""),
    # mimecast/mta-sts .../StsPolicyTest.java (matchMx*)
    ("mimecast partial wildcard", "service-alpha-inbound-*.mimecast.com", "service-alpha-inbound-a.mimecast.com", False, "mimecast matches; " + WILDCARD),
    ("mimecast partial wildcard miss", "service-alpha-inbound-*.mimecast.com", "service-alpha-a.mimecast.com", False, ""),
)
def test_mx_patterns(pattern: str, host: str, matches: bool, differs: str) -> None:
    assert mx_matches(pattern, host) is matches


# ---- TLS-RPT records: RFC 8460 §3 ------------------------------------------------------------
@cases(
    "records, expected, differs",
    # mjl-/mox tlsrpt/parse_test.go (TestRecord)
    ("mox good trailing ;", ["v=TLSRPTv1; rua=mailto:tlsrpt@mox.example;"], ("mailto:tlsrpt@mox.example",), ""),
    ("mox good trailing spaces", ["v=TLSRPTv1; rua=mailto:tlsrpt@mox.example , \t\t https://mox.example/tlsrpt  "], TlsRptSyntax, "mox accepts; " + TLSRPT_WSP),
    ("mox good trimmed twin", ["v=TLSRPTv1; rua=mailto:tlsrpt@mox.example , \t\t https://mox.example/tlsrpt"], ("mailto:tlsrpt@mox.example", "https://mox.example/tlsrpt"), ""),
    ("mox good ext", ["v=TLSRPTv1; rua=mailto:tlsrpt@mox.example; ext=yes"], ("mailto:tlsrpt@mox.example",), ""),
    ("mox good two rua", ["v=TLSRPTv1 ; rua=mailto:x@x.example; rua=mailto:y@x.example"], ("mailto:x@x.example", "mailto:y@x.example"), ""),
    ("mox bad v0", ["v=TLSRPTv0"], NoTlsRptRecord, ""),
    ("mox bad v10", ["v=TLSRPTv10"], NoTlsRptRecord, ""),
    ("mox bad v2", ["v=TLSRPTv2"], NoTlsRptRecord, ""),
    ("mox bad version alone", ["v=TLSRPTv1"], NoTlsRptRecord, ""),
    ("mox bad version ;", ["v=TLSRPTv1;"], TlsRptSyntax, ""),
    ("mox bad ext only", ["v=TLSRPTv1; ext=1"], TlsRptSyntax, ""),
    ("mox bad empty rua", ["v=TLSRPTv1; rua="], TlsRptSyntax, ""),
    ("mox bad noscheme", ["v=TLSRPTv1; rua=noscheme"], TlsRptSyntax, ""),
    ("mox bad empty uris", ["v=TLSRPTv1; rua=,, ,"], TlsRptSyntax, ""),
    ("mox bad empty ext", ["v=TLSRPTv1; rua=mailto:x@x.example; more="], TlsRptSyntax, ""),
    ("mox bad long ext name", ["v=TLSRPTv1; rua=mailto:x@x.example; a12345678901234567890123456789012=1"], TlsRptSyntax, ""),
    ("mox bad ext 1%", ["v=TLSRPTv1; rua=mailto:x@x.example; 1%=a"], TlsRptSyntax, ""),
    ("mox bad ext test==", ["v=TLSRPTv1; rua=mailto:x@x.example; test=="], TlsRptSyntax, ""),
    ("mox bad ;;", ["v=TLSRPTv1; rua=mailto:x@x.example;;"], TlsRptSyntax, ""),
    ("mox bad trailing words", ["v=TLSRPTv1; rua=mailto:x@x.example other"], TlsRptSyntax, ""),
    ("mox bad uri %", ["v=TLSRPTv1; rua=http://bad/%"], TlsRptSyntax, ""),
    ("mox bad uri % https", ["v=TLSRPTv1; rua=https://bad/%"], TlsRptSyntax, ""),
    ("mox good uri %41 twin", ["v=TLSRPTv1; rua=https://good/%41"], ("https://good/%41",), ""),
    # mjl-/mox tlsrpt/lookup_test.go (TestLookup)
    ("mox lookup one among other", ["v=TLSRPTv1; rua=mailto:tlsrpt@basic.example", "other"], ("mailto:tlsrpt@basic.example",), ""),
    ("mox lookup multiple", ["v=TLSRPTv1; rua=mailto:tlsrpt@basic.example", "v=TLSRPTv1; rua=mailto:tlsrpt@basic.example"], MultipleTlsRptRecords, ""),
    ("mox lookup malformed", ["v=TLSRPTv1; bad"], TlsRptSyntax, ""),
    ("mox lookup other", ["other"], NoTlsRptRecord, ""),
    # domainaware/checkdmarc tests/test_smtp_tls_reporting.py
    ("checkdmarc valid", ["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"], ("mailto:tlsrpt@example.com",), ""),
    ("checkdmarc extension", ["v=TLSRPTv1; rua=mailto:a@example.com; extension-field.1=foo"], ("mailto:a@example.com",), ""),
    ("checkdmarc digit-initial ext", ["v=TLSRPTv1; rua=mailto:a@example.com; 1ext=foo"], ("mailto:a@example.com",), ""),
    ("checkdmarc duplicate rua", ["v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"], ("mailto:a@example.com", "mailto:b@example.com"), "checkdmarc keeps the first; " + RUA_ROOM),
    ("checkdmarc wsp around comma", ["v=TLSRPTv1; rua=mailto:a@x.com, mailto:b@x.com"], ("mailto:a@x.com", "mailto:b@x.com"), ""),
    ("checkdmarc v = ", ["v = TLSRPTv1; rua=mailto:a@example.com"], NoTlsRptRecord, ""),
    ("checkdmarc rua =", ["v=TLSRPTv1; rua =mailto:a@example.com"], TlsRptSyntax, ""),
    ("checkdmarc RUA=", ["v=TLSRPTv1; RUA=mailto:a@example.com"], TlsRptSyntax, ""),
    ("checkdmarc xhttps", ["v=TLSRPTv1; rua=xhttps://example.com/tlsrpt"], TlsRptSyntax, ""),
    ("checkdmarc spf", ["v=spf1 -all"], NoTlsRptRecord, ""),
    ("checkdmarc not a uri", ["v=TLSRPTv1; rua=not_a_valid_uri"], TlsRptSyntax, ""),
    ("checkdmarc no rua", ["v=TLSRPTv1"], NoTlsRptRecord, ""),
    ("checkdmarc https", ["v=TLSRPTv1; rua=https://tlsrpt.example.com/report"], ("https://tlsrpt.example.com/report",), ""),
    ("checkdmarc trailing ;", ["v=TLSRPTv1; rua=mailto:tlsrpt@example.com;"], ("mailto:tlsrpt@example.com",), ""),
    ("checkdmarc prefix needs ;", ["v=TLSRPTv1extra; junk", "v=TLSRPTv1", "v=TLSRPTv1; rua=mailto:rua@example.com"], ("mailto:rua@example.com",), ""),
    ("checkdmarc two real records", ["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"], MultipleTlsRptRecords, ""),
    ("checkdmarc beside unrelated", ["site-verification=token123", "v=TLSRPTv1; rua=mailto:rua@example.com"], ("mailto:rua@example.com",), ""),
    ("checkdmarc only unrelated", ["site-verification=token123"], NoTlsRptRecord, ""),
    # stalwartlabs/mail-auth src/mta_sts/parse.rs (tlsrpt_parse)
    ("stalwart mailto no space", ["v=TLSRPTv1;rua=mailto:reports@example.com"], ("mailto:reports@example.com",), ""),
    ("stalwart https", ["v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"], ("https://reporting.example.com/v1/tlsrpt",), ""),
    ("stalwart both", ["v=TLSRPTv1; rua=mailto:tlsrpt@mydomain.com,https://tlsrpt.mydomain.com/v1"], ("mailto:tlsrpt@mydomain.com", "https://tlsrpt.mydomain.com/v1"), ""),
)
def test_tlsrpt_records(records: list[str], expected: object, differs: str) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            parse_tlsrpt_records(records)
    else:
        assert parse_tlsrpt_records(records).rua == expected


# ---- report JSON: RFC 8460 §4.4, with real reports from large providers ---------------------
# RFC 8460 Appendix B, as mjl-/mox tlsrpt/report_test.go and stalwartlabs/mail-auth
# resources/tlsrpt/rpt01.json carry it.
RFC_EXAMPLE: dict[str, Any] = {
    "organization-name": "Company-X",
    "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
    "contact-info": "sts-reporting@company-x.example",
    "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    "policies": [{
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
                   "policy-domain": "company-y.example", "mx-host": ["*.mail.company-y.example"]},
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [
            {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1", "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 100},
            {"result-type": "starttls-not-supported", "sending-mta-ip": "2001:db8:abcd:0013::1", "receiving-mx-hostname": "mx2.mail.company-y.example", "receiving-ip": "203.0.113.56", "failed-session-count": 200,
             "additional-information": "https://reports.company-x.example/report_info ? id = 5065427 c - 23 d3# StarttlsNotSupported "},
            {"result-type": "validation-failure", "sending-mta-ip": "198.51.100.62", "receiving-ip": "203.0.113.58", "receiving-mx-hostname": "mx-backup.mail.company-y.example", "failed-session-count": 3,
             "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"},
        ],
    }],
}
# The gzip attachment of mjl-/mox testdata/tlsreports/microsoft.eml: Microsoft's report for
# 2023-01-10, its date-range without a UTC offset (mox compensates: "Microsoft is sending
# reports with invalid start-datetime/end-datetime (missing timezone)").
MICROSOFT_GZ = base64.b64decode(
    "H4sIAAAAAAAEAHWRwWrDMAyGXyX4ujjESbulPg123qm9jTKM4wRvsRVspSQLefcp6TpGYSCwZH2S"
    "fsszg9Aqb78UWvDcK2eYZK9WB4jQYPICoYewJVnKaoWGB+VbgmYWUQXk6x3arazIi5Lngov8lOdy"
    "Myoyvv4HKkq5P5CxJWUaPCqN3PoGiMIuhh65h2D6bnp2N0GZBkc96RZotq0JFWUpDtW+2u/KSpRC"
    "PBUPaCJmo4Mx8x3RPXRWWxOZfJuvwbTqv3ocp37VFTHe0IlHDNa3xLOLCZEeL5Pj6XgRRDiojUwM"
    "yQzarPEok09w9sNnd2OdGt9VS3D1uKNNnH+71+CU9esr/xbQEuLgnAqbOARUHY+D1ibGZiCXzvWL"
    "NAwemSzSH6RRthuCuc/ny3JevgG9VPpP3gEAAA==")
MICROSOFT, _ = decode_report(MICROSOFT_GZ, "application/tlsrpt+gzip")
# stalwartlabs/mail-auth resources/tlsrpt/rpt02.json: a Google Inc. report (RFC 3339, "Z").
GOOGLE: dict[str, Any] = {
    "report-id": "2020-01-01T00:00:00Z_example.com",
    "date-range": {"start-datetime": "2020-01-01T00:00:00Z", "end-datetime": "2020-01-07T23:59:59Z"},
    "organization-name": "Google Inc.", "contact-info": "smtp-tls-reporting@google.com",
    "policies": [{
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce", "mx: demo.example.com", "max_age: 604800"], "policy-domain": "example.com"},
        "summary": {"total-successful-session-count": 23, "total-failure-session-count": 1},
        "failure-details": [{"result-type": "certificate-host-mismatch", "sending-mta-ip": "123.123.123.123", "receiving-ip": "234.234.234.234",
                             "receiving-mx-hostname": "demo.example.com", "failed-session-count": 1}],
    }],
}
# stalwartlabs/mail-auth resources/tlsrpt/rpt03.json: a parser edge case in Google's shape.
GOOGLE_EDGE: dict[str, Any] = {
    "organization-name": "Google Inc.",
    "date-range": {"start-datetime": "2019-04-14T00:00:00Z", "end-datetime": "2019-04-14T23:59:59Z"},
    "contact-info": "smtp-tls-reporting@google.com", "report-id": "2019-04-14T00:00:00Z_example.org",
    "policies": [{"policy": {"policy-type": "no-policy-found"}, "summary": {"total-successful-session-count": 1}},
                 {"policy": {"policy-type": "invalid-policy-type"}, "summary": {"total-successful-session-count": 1}}],
}


def with_dates(doc: object, start: str, end: str) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(doc)  # type: ignore[arg-type]
    out["date-range"] = {"start-datetime": start, "end-datetime": end}
    return out


def repaired(doc: dict[str, Any]) -> dict[str, Any]:
    """GOOGLE_EDGE made valid: a policy-domain and a failure count in each entry, a known type."""
    out = copy.deepcopy(doc)
    for entry in out["policies"]:
        entry["policy"] = {"policy-type": "no-policy-found", "policy-domain": "example.org"}
        entry["summary"]["total-failure-session-count"] = 0
    return out


@cases(
    "doc, problem, differs",
    ("rfc 8460 example (mox, stalwart rpt01)", RFC_EXAMPLE, None, ""),
    ("google rpt02 (stalwart)", GOOGLE, None, ""),
    ("microsoft no offset (mox)", MICROSOFT, "date-range.start-datetime: '2023-01-10T00:00:00' has no UTC offset", "mox guesses UTC; " + OFFSET),
    ("microsoft with Z", with_dates(MICROSOFT, "2023-01-10T00:00:00Z", "2023-01-10T23:59:59Z"), None, ""),
    ("google edge bad type (stalwart rpt03)", GOOGLE_EDGE, "policies[1].policy.policy-type: 'invalid-policy-type' is not one of tlsa, sts, no-policy-found", "stalwart parses it; RFC 8460 §4.4 policy-type is tlsa, sts or no-policy-found"),
    ("google edge no domain (stalwart rpt03)", GOOGLE_EDGE, "policies[0].policy.policy-domain: missing (required)", "stalwart parses it; RFC 8460 §4.4: a policy entry names its policy-domain, and the lab requires it"),
    ("google edge repaired", repaired(GOOGLE_EDGE), None, ""),
    # RFC 3339 §5.8 examples, the leap seconds among them (time-second 60, §5.7)
    ("rfc 3339 fraction", with_dates(RFC_EXAMPLE, "1985-04-12T23:20:50.52Z", "1985-04-12T23:20:50.52Z"), None, ""),
    ("rfc 3339 offset", with_dates(RFC_EXAMPLE, "1996-12-19T16:39:57-08:00", "1996-12-19T16:39:57-08:00"), None, ""),
    ("rfc 3339 leap second", with_dates(RFC_EXAMPLE, "1990-12-31T23:59:59Z", "1990-12-31T23:59:60Z"), None, ""),
    ("rfc 3339 leap second offset", with_dates(RFC_EXAMPLE, "1990-12-31T15:59:60-08:00", "1990-12-31T23:59:60Z"), None, ""),
    ("rfc 3339 odd offset", with_dates(RFC_EXAMPLE, "1937-01-01T12:00:27.87+00:20", "1937-01-01T12:00:27.87+00:20"), None, ""),
    ("leap second not at a month's end", with_dates(RFC_EXAMPLE, "1990-12-30T23:59:60Z", "1990-12-31T00:00:00Z"), "is not a real date and time (second 60", ""),
)
def test_reports(doc: object, problem: str | None, differs: str) -> None:
    problems = validate_report(doc)
    if problem is None:
        assert problems == ()
    else:
        assert any(problem in p for p in problems), problems


def test_microsoft_report_is_the_real_bytes() -> None:
    # The decoded attachment, so a reader sees what the row above judges.
    assert MICROSOFT is not None and MICROSOFT["organization-name"] == "Microsoft Corporation"
    assert MICROSOFT["date-range"] == {"start-datetime": "2023-01-10T00:00:00", "end-datetime": "2023-01-10T23:59:59"}
    assert json.loads(gzip.decompress(MICROSOFT_GZ)) == MICROSOFT
