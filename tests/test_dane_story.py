"""The DNSSEC evidence of a DANE step (issue 16): the pure readings of lab/core/daneevidence.py
(a failure beside every success), the run record of real DANE runs carrying it, and the HTML
story showing it. A non-DANE step keeps its story unchanged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from downgrade_lab.core.daneevidence import (
    abbreviate,
    answer_rows,
    shown_certificate,
    tampered,
    tampering,
)
from downgrade_lab.core.model import Attack
from downgrade_lab.core.record import RunRecord, StepRecord
from downgrade_lab.core.recordparts import DaneEvidence, DnsQuery, Tampering, TlsaEntry, ZoneKeyTag
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.frontends.report.html import to_html
from downgrade_lab.harness.pki import PKI
from downgrade_lab.harness.runner import run_all
from tests.recordschema import schema_errors
from tests.reportrun import SCENARIOS

HOST = "mx1.example.test"
OWNER = "_25._tcp.mx1.example.test"
NOW = time.time()


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    with PKI() as p:
        yield p


# ---- what the DNS attacks did, in words ----

ZONES = ("test", "example.test")


@pytest.mark.parametrize(("attack", "signed", "names"), [
    (Attack("forge-tlsa"), ZONES, [(OWNER, "TLSA")]),
    (Attack("forge-tlsa", hosts=("mx2.example.test",)), ZONES, []),  # another host's
    (Attack("drop-tlsa"), ZONES, [(OWNER, "TLSA")]),
    (Attack("expire-rrsig"), ZONES, [(OWNER, "TLSA")]),
    (Attack("expire-rrsig"), ("test",), []),  # an unsigned zone has no signature to replay
    (Attack("strip-rrsig"), ZONES, [("*.example.test", "*")]),
    (Attack("strip-rrsig", hosts=(HOST,)), ZONES, [(HOST, "*"), (OWNER, "*")]),
    (Attack("remove-ds"), ZONES, [("example.test", "DS"), ("*.example.test", "*")]),
    (Attack("remove-ds"), ("test",), []),  # nothing signed to unlink
    (Attack("wrong-ds"), ZONES, [("example.test", "DS"), ("*.example.test", "*")]),
    (Attack("strip-starttls"), ZONES, []),  # not a DNS attack
])
def test_tampering_names_what_each_attack_touched(attack: Attack, signed: tuple[str, ...],
                                                   names: list[tuple[str, str]]) -> None:
    forged = [TlsaEntry(HOST, 3, 1, 1, "ab" * 32)]
    done = tampering("example.test", [HOST], [attack], forged, ZONES, signed)
    assert [(t.name, t.rtype) for t in done] == names
    assert all(t.attack == attack.kind for t in done)


def test_a_forged_record_is_named_with_the_attackers_digest() -> None:
    forged = [TlsaEntry(HOST, 3, 1, 1, "ab" * 32)]
    (signed,) = tampering("example.test", [HOST], [Attack("forge-tlsa")], forged, ZONES, ZONES)
    assert "3 1 1 " + "ab" * 32 in signed.what and "attacker's own key" in signed.what
    # the twin: in an unsigned zone there is no key to name
    (plain,) = tampering("example.test", [HOST], [Attack("forge-tlsa")], forged, ZONES, ("test",))
    assert "unsigned" in plain.what and "key" not in plain.what


@pytest.mark.parametrize(("t", "qname", "qtype", "hit"), [
    (Tampering("forge-tlsa", OWNER, "TLSA", ""), OWNER + ".", "TLSA", True),
    (Tampering("forge-tlsa", OWNER, "TLSA", ""), OWNER + ".", "A", False),
    (Tampering("strip-rrsig", "*.example.test", "*", ""), "mx1.example.test.", "A", True),
    (Tampering("strip-rrsig", "*.example.test", "*", ""), "example.test.", "DS", False),  # parent
    (Tampering("strip-rrsig", "*.example.test", "*", ""), "other.test.", "A", False),
])
def test_tampered_matches_names_and_types(t: Tampering, qname: str, qtype: str,
                                          hit: bool) -> None:
    assert tampered(t, qname, qtype) is hit


# ---- the certificate shown, against the published records ----

def _chain(pki: PKI, variant: str) -> list[bytes]:
    return pki.chain_der(HOST, variant)


def _spki_record(pki: PKI, variant: str, usage: int = 3) -> TlsaEntry:
    from downgrade_lab.core.dane import record_for
    der = pki.ca_der() if usage == 2 else pki.leaf_der(HOST, variant)
    return TlsaEntry(HOST, usage, 1, 1, record_for(der, usage, 1, 1).data.hex())


def test_the_genuine_certificate_matches_its_published_record(pki: PKI) -> None:
    published = [_spki_record(pki, "valid")]
    shown = shown_certificate(0, HOST, "receiver", "valid", _chain(pki, "valid"), published, [],
                              [HOST, "example.test"], NOW)
    assert shown.matches and shown.matched == published[0].text()
    assert shown.spki_sha256 == published[0].data  # a 3 1 1 record is the SPKI's SHA-256
    assert shown.forged_match is None


def test_the_attackers_certificate_matches_only_the_forged_record(pki: PKI) -> None:
    published = [_spki_record(pki, "valid")]
    forged = [_spki_record(pki, "self-signed")]
    shown = shown_certificate(1, HOST, "attacker", "self-signed", _chain(pki, "self-signed"),
                              published, forged, [HOST, "example.test"], NOW)
    assert not shown.matches and shown.matched is None
    assert shown.why == "no TLSA record matches the certificate"
    assert shown.forged_match == forged[0].text()
    assert shown.subject == shown.issuer == f"CN={HOST}"


@pytest.mark.parametrize(("variant", "ok", "why"), [
    ("valid", True, "matches the published 2 1 1"),
    ("wrong-name", False, "names none of"),  # DANE-TA checks the name (T-09)
    ("untrusted", False, "no TLSA record matches"),  # another CA
])
def test_dane_ta_matches_through_the_chain(pki: PKI, variant: str, ok: bool, why: str) -> None:
    published = [_spki_record(pki, "valid", usage=2)]
    shown = shown_certificate(0, HOST, "receiver", variant, _chain(pki, variant), published, [],
                              [HOST, "example.test"], NOW)
    assert shown.matches is ok and why in shown.why


def test_no_published_record_is_said_so(pki: PKI) -> None:
    shown = shown_certificate(0, HOST, "receiver", "valid", _chain(pki, "valid"), [], [],
                              [HOST], NOW)
    assert not shown.matches and shown.why == f"no TLSA record is published for {HOST}"


# ---- the answers, with their signature state ----

KEY = 4242
SIG = "13 5 0 {exp} 20200101000000 {tag} example.test. c2ln"
DANE = DaneEvidence("example.test", (HOST,), True, "valid",
                    keys=(ZoneKeyTag("example.test", KEY), ZoneKeyTag("test", 7)))


def _q(qtype: str, answers: tuple[str, ...], authority: tuple[str, ...] = (),
       qname: str = OWNER + ".", rcode: str = "NOERROR") -> DnsQuery:
    return DnsQuery(NOW, "udp", qname, qtype, rcode, answers, "", "127.0.0.1:1", authority)


TLSA_LINE = f"{OWNER}. 0 IN TLSA 3 1 1 " + "ab" * 32


def _sig(covered: str, exp: str = "20991231000000", tag: int = KEY, owner: str = OWNER) -> str:
    return f"{owner}. 0 IN RRSIG {covered} " + SIG.format(exp=exp, tag=tag)


@pytest.mark.parametrize(("query", "state", "ok"), [
    (_q("TLSA", (TLSA_LINE, _sig("TLSA"))), "signed", True),
    (_q("TLSA", (TLSA_LINE,)), "unsigned", None),
    (_q("TLSA", (TLSA_LINE, _sig("TLSA", exp="20200102000000"))), "expired", False),
    (_q("TLSA", (TLSA_LINE, _sig("TLSA", tag=999))), "wrong-key", False),
    (_q("TLSA", (), ("example.test. 0 IN SOA a. b. 1 0 0 0 0", _sig("SOA", owner="example.test"),
                     f"{OWNER}. 0 IN NSEC x.example.test. RRSIG NSEC", _sig("NSEC"))),
     "proved-absent", True),
    (_q("TLSA", (), ("example.test. 0 IN SOA a. b. 1 0 0 0 0",
                     _sig("SOA", owner="example.test"))), "no-proof", False),
    (_q("TLSA", (), ("example.test. 0 IN SOA a. b. 1 0 0 0 0",)), "no-records", None),
    (_q("TLSA", (), rcode="SERVFAIL"), "failed", False),
])
def test_answer_state(query: DnsQuery, state: str, ok: bool | None) -> None:
    (row,) = answer_rows([query], DANE)
    assert (row.state, row.ok) == (state, ok)


def test_only_the_names_dane_rests_on_are_shown_once_each() -> None:
    queries = [_q("TXT", (), qname="_mta-sts.example.test."),  # MTA-STS: not this panel
               _q("DS", (), qname="mx1.example.test."),  # the validator's walk: not a zone
               _q("A", (f"{HOST}. 0 IN A 127.0.0.1",), qname=HOST + "."),
               _q("A", (f"{HOST}. 0 IN A 127.0.0.1",), qname=HOST + "."),
               _q("MX", (f"example.test. 0 IN MX 10 {HOST}.",), qname="example.test."),
               _q("A", ("other.test. 0 IN A 127.0.0.1",), qname="other.test.")]
    rows = answer_rows(queries, DANE)
    assert [(r.qname, r.qtype, r.times) for r in rows] == [(HOST, "A", 2), ("example.test", "MX", 1)]


def test_abbreviate_keeps_enough_to_compare() -> None:
    assert abbreviate("3 1 1 " + "0123456789abcdef" * 4) == "3 1 1 0123456789abcdef…89abcdef"
    assert abbreviate("3 1 1 abcd") == "3 1 1 abcd"  # short: as it is


# ---- real runs: the record carries it, the story shows it ----

@pytest.fixture(scope="module")
def dane_run() -> dict[str, Any]:
    ids = ("dane/forge-tlsa", "dane/ee-strip", "strip/no-policy")
    scenarios = [load_scenario(SCENARIOS / f"{sid}.toml", sid) for sid in ids]
    return asyncio.run(run_all(scenarios, ["reference"])).as_json()


def _steps(record: dict[str, Any], scenario: str) -> list[StepRecord]:
    (result,) = [r for r in RunRecord.from_json(record).results if r.scenario == scenario]
    return list(result.steps)




@pytest.mark.e2e
def test_the_record_of_a_dane_run_is_valid_and_carries_the_evidence(
        dane_run: dict[str, Any]) -> None:
    assert schema_errors(dane_run) == []
    assert dane_run["schema_version"] == "1.1"
    honest, forged, unsigned = _steps(dane_run, "dane/forge-tlsa")
    for step in (honest, forged, unsigned):
        assert step.dane is not None
    assert honest.dane is not None and forged.dane is not None and unsigned.dane is not None
    (published,) = honest.dane.published
    assert (published.usage, published.selector, published.mtype) == (3, 1, 1)
    # the honest step: the receiver's certificate matches what the zone published
    (cert,) = honest.dane.certificates
    assert (cert.presented_by, cert.matches, cert.spki_sha256) == ("receiver", True,
                                                                    published.data)
    assert honest.dane.tampering == ()
    # the attack: a forged 3 1 1 for the attacker's key, signed with the attacker's key
    (fake,) = forged.dane.forged
    assert fake.data != published.data
    assert [t.attack for t in forged.dane.tampering] == ["forge-tlsa"]
    rows = {(r.qname, r.qtype): r for r in answer_rows(forged.dns_queries, forged.dane)}
    tlsa = rows[(OWNER, "TLSA")]
    assert tlsa.forged and tlsa.state == "wrong-key"
    assert tlsa.records == (f"3 1 1 {fake.data}",)
    assert forged.dane.certificates == ()  # the reference sender never connected
    # the unsigned twin: the attacker's certificate reaches the sender, matching only the fake
    (shown,) = unsigned.dane.certificates
    assert (shown.presented_by, shown.matches, shown.forged_match) == (
        "attacker", False, fake.text())


@pytest.mark.e2e
def test_a_step_without_dane_has_no_evidence(dane_run: dict[str, Any]) -> None:
    (step,) = _steps(dane_run, "strip/no-policy")
    assert step.dane is None
    (raw,) = [r for r in dane_run["results"] if r["scenario"] == "strip/no-policy"]
    assert "dane" not in raw["steps"][0]
    assert all("authority" not in q for q in raw["steps"][0]["dns_queries"])


def _story(page: str, index: int) -> str:
    story = page[page.index(f'id="run-{index}"'):]
    end = story.find('<section class="story"', 1)
    return story if end < 0 else story[:end]


@pytest.mark.e2e
def test_the_story_shows_the_dnssec_evidence(dane_run: dict[str, Any]) -> None:
    page = to_html(dane_run)
    names = [r["scenario"] for r in dane_run["results"]]
    story = _story(page, names.index("dane/forge-tlsa"))
    honest, forged, unsigned = _steps(dane_run, "dane/forge-tlsa")
    assert honest.dane is not None and forged.dane is not None and unsigned.dane is not None
    published = honest.dane.published[0].data
    fake = forged.dane.forged[0].data
    assert story.count('<div class="dnssec">') == 3  # one panel per step
    assert f'title="{published}"' in story  # the published digest, whole on hover
    assert abbreviate(published, 0) in story  # and cut in the cell
    assert '<span class="badge forged">forged</span>' in story
    assert f"3 1 1 {abbreviate(fake, 0)}" in story  # the forged record in the TLSA answer
    assert "wrong-key: RRSIG by key" in story
    assert "forge-tlsa: genuine TLSA replaced by" in story
    # the certificates: the genuine one matched, the attacker's did not (but fits the fake)
    cert = honest.dane.certificates[0]
    assert f'title="{cert.spki_sha256}"' in story
    assert "✓ matches the published 3 1 1" in story
    shown = unsigned.dane.certificates[0]
    assert f'title="{shown.spki_sha256}"' in story
    assert "✗ no TLSA record matches the certificate" in story
    assert "matches the forged 3 1 1" in story
    # the forged step: the sender never got a certificate
    assert "None: no TLS handshake reached the sender in this step." in story


@pytest.mark.e2e
def test_a_story_without_dane_has_no_dnssec_panel(dane_run: dict[str, Any]) -> None:
    page = to_html(dane_run)
    names = [r["scenario"] for r in dane_run["results"]]
    story = _story(page, names.index("strip/no-policy"))
    assert 'class="dnssec"' not in story and "DNSSEC" not in story


