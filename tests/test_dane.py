"""DANE for SMTP (RFC 7672): the pure decisions of lab/core/dane.py, the `[dane]` scenario table,
and the reference sender against a signed lab. A failure beside every success."""

from __future__ import annotations

import hashlib
import time

import pytest

from downgrade_lab.core.dane import Tlsa, authenticate, plan_host, record_for, usable
from downgrade_lab.core.scenario import scenario_from_text
from downgrade_lab.errors import ScenarioError
from downgrade_lab.harness.pki import PKI

NOW = time.time()
HOST = "mx1.example.test"


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    with PKI() as p:
        yield p


def chain(pki: PKI, host: str, variant: str) -> list[bytes]:
    """What the server sends: its certificate and, for lab-CA certificates, the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    pem = pki.cert_files(host, variant)[0].read_bytes()
    return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem)]


@pytest.mark.parametrize(("record", "ok"), [
    (Tlsa(3, 1, 1, b"x" * 32), True),
    (Tlsa(2, 0, 2, b"x" * 64), True),
    (Tlsa(3, 0, 0, b"whatever length"), True),
    (Tlsa(1, 1, 1, b"x" * 32), False),  # PKIX-EE (T-10)
    (Tlsa(0, 1, 1, b"x" * 32), False),  # PKIX-TA (T-10)
    (Tlsa(4, 1, 1, b"x" * 32), False),  # unknown usage (T-11)
    (Tlsa(3, 2, 1, b"x" * 32), False),  # unknown selector
    (Tlsa(3, 1, 3, b"x" * 32), False),  # unknown matching type
    (Tlsa(3, 1, 1, b"x" * 2), False),  # a truncated digest
], ids=lambda v: v.text()[:8] if isinstance(v, Tlsa) else str(v))
def test_usable(record: Tlsa, ok: bool) -> None:
    assert usable(record) is ok


@pytest.mark.parametrize(("selector", "mtype", "size"), [(0, 0, None), (0, 1, 32), (1, 1, 32),
                                                         (1, 2, 64), (1, 0, None)])
def test_record_for(pki: PKI, selector: int, mtype: int, size: int | None) -> None:
    r = record_for(pki.leaf_der(HOST), 3, selector, mtype)
    assert size is None or len(r.data) == size
    assert authenticate([r], chain(pki, HOST, "valid"), [HOST], NOW) is None
    assert authenticate([r], chain(pki, HOST, "self-signed"), [HOST], NOW) is not None


# (id, usage, record's cert, served variant, names, authenticates?)
AUTH = [
    ("ee-genuine", 3, "leaf", "valid", [HOST], True),
    ("ee-other-key", 3, "other", "valid", [HOST], False),
    ("ee-ignores-expiry", 3, "leaf-expired", "expired", [HOST], True),
    ("ee-ignores-name", 3, "leaf-wrong-name", "wrong-name", [HOST], True),
    ("ee-self-signed", 3, "leaf-self-signed", "self-signed", [HOST], True),
    ("ta-genuine", 2, "ca", "valid", [HOST], True),
    ("ta-next-hop-name", 2, "ca", "valid", ["mx9.example.test", HOST], True),
    ("ta-checks-expiry", 2, "ca", "expired", [HOST], False),
    ("ta-checks-name", 2, "ca", "wrong-name", [HOST], False),
    ("ta-other-ca", 2, "ca", "untrusted", [HOST], False),
    ("ta-self-signed", 2, "ca", "self-signed", [HOST], False),
    ("ta-leaf-is-not-an-anchor", 2, "leaf", "valid", [HOST], False),
]


@pytest.mark.parametrize(("usage", "which", "variant", "names", "ok"), [a[1:] for a in AUTH],
                         ids=[a[0] for a in AUTH])
def test_authenticate(pki: PKI, usage: int, which: str, variant: str, names: list[str],
                      ok: bool) -> None:
    if which == "ca":
        der = pki.ca_der()
    elif which == "other":
        der = pki.leaf_der("unrelated.invalid", "self-signed")
    else:
        der = pki.leaf_der(HOST, which.partition("-")[2] or "valid")
    record = record_for(der, usage, 1, 1)
    why = authenticate([record], chain(pki, HOST, variant), names, NOW)
    assert (why is None) is ok, why


def test_unusable_records_never_authenticate(pki: PKI) -> None:
    record = record_for(pki.leaf_der(HOST), 1, 1, 1)  # PKIX-EE of the very certificate
    assert authenticate([record], chain(pki, HOST, "valid"), [HOST], NOW) == "no usable TLSA record"


def test_empty_chain_fails() -> None:
    assert authenticate([Tlsa(3, 1, 1, hashlib.sha256(b"").digest())], [], [HOST], NOW)


# (id, address security, TLSA security (None: not looked up), records, plan)
PLANS = [
    ("secure-usable", "secure", "secure", [Tlsa(3, 1, 1, b"x" * 32)], "dane"),
    ("secure-unusable", "secure", "secure", [Tlsa(1, 1, 1, b"x" * 32)], "mandatory-tls"),
    ("secure-denial", "secure", "secure", [], "no-dane"),
    ("tlsa-insecure", "secure", "insecure", [Tlsa(3, 1, 1, b"x" * 32)], "no-dane"),
    ("tlsa-bogus", "secure", "bogus", [], "unreachable"),
    ("tlsa-failed", "secure", "indeterminate", [], "unreachable"),
    ("address-insecure", "insecure", None, [], "no-dane"),
    ("address-bogus", "bogus", None, [], "unreachable"),
]


@pytest.mark.parametrize(("address", "tlsa", "records", "plan"), [p[1:] for p in PLANS],
                         ids=[p[0] for p in PLANS])
def test_plan_host(address: str, tlsa: str | None, records: list[Tlsa], plan: str) -> None:
    assert plan_host(address, tlsa, records).plan == plan


# ---- the [dane] table ------------------------------------------------------------------------

BASE = 'title = "t"\n[[step]]\nexpect = "delivered"\n'


def test_dane_table_parses() -> None:
    s = scenario_from_text('title = "t"\n[dane]\ndnssec = true\nds = "missing"\n'
                           'tlsa = [{usage = 2, selector = 0, mtype = 2, cert = "ca"}]\n'
                           '[[step]]\nexpect = "delivered"\n[[step]]\nexpect = "delivered"\n'
                           'set.dane = {dnssec = false}\n', file="f.toml", scenario_id="f")
    first, second = (step.world.dane for step in s.steps)
    assert first is not None and second is not None
    assert first.ds == "missing" and first.tlsa[0][1][0].cert == "ca"
    assert first.dnssec and not second.dnssec and second.tlsa == first.tlsa


def test_no_dane_table_means_no_dnssec() -> None:
    assert scenario_from_text(BASE, file="f.toml", scenario_id="f").steps[0].world.dane is None


@pytest.mark.parametrize(("toml", "key"), [
    ('[dane]\nsigned = true\n', "dane.signed"),
    ('[dane]\ntlsa = [{usage = 3, cert = "mine"}]\n', "dane.tlsa[0].cert"),
    ('[dane]\ntlsa = [{usage = 3, colour = 1}]\n', "dane.tlsa[0].colour"),
    ('[dane]\ntlsa = [{usage = 300}]\n', "dane.tlsa[0].usage"),
    ('[dane]\ntlsa = [{data = "xyz"}]\n', "dane.tlsa[0].data"),
    ('[dane]\nds = "gone"\n', "dane.ds"),
    ('[dane]\ntlsa = {"mx9.example.test" = []}\n', "dane.tlsa.mx9.example.test"),
    ('[message]\nto = "bob@example.com"\n[dane]\n', "dane"),
], ids=lambda v: v if "\n" not in v else "")
def test_dane_table_errors_name_file_and_key(toml: str, key: str) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_text('title = "t"\n' + toml + '[[step]]\nexpect = "delivered"\n',
                           file="bad.toml", scenario_id="bad")
    assert "bad.toml" in str(err.value) and key in str(err.value)


def test_dane_attack_needs_a_dane_table() -> None:
    with pytest.raises(ScenarioError, match="needs a \\[dane\\] table"):
        scenario_from_text('title = "t"\n[[step]]\nattack = ["forge-tlsa"]\nexpect = "delivered"\n',
                           file="bad.toml", scenario_id="bad")


# ---- through the lab: real signatures, real packets, both built-in senders ---------------------

DANE_E2E = ("dane/ee-strip", "dane/forge-tlsa", "dane/next-mx-after-bogus-tlsa",
            "dane/sts-valid-dane-fails", "dane/ta-receiver-expired")


@pytest.mark.e2e
async def test_reference_passes_where_opportunistic_fails() -> None:
    from pathlib import Path

    from downgrade_lab.core.scenario import load_scenario
    from downgrade_lab.harness.runner import run_all

    root = Path(__file__).resolve().parent.parent / "scenarios"
    scenarios = [load_scenario(root / f"{sid}.toml", sid) for sid in DANE_E2E]
    record = (await run_all(scenarios, ["reference", "opportunistic"], jobs=2)).as_json()
    verdicts = {(r["scenario"], r["sender"]): r for r in record["results"]}
    for sid in DANE_E2E:
        ref, opp = verdicts[(sid, "reference")], verdicts[(sid, "opportunistic")]
        assert ref["verdict"] == "PASS", (sid, ref["reason"])
        assert opp["verdict"] == "FAIL", (sid, opp["reason"])
        assert [s["verdict"] for s in ref["steps"]] == ["PASS"] * 3
        assert opp["steps"][0]["verdict"] == "PASS"  # the honest twin is no trap
        # the lab answered DNSSEC queries: the reference walked the chain from test.
        qtypes = {q["qtype"] for q in ref["steps"][1]["dns_queries"]}
        assert {"DNSKEY", "DS"} <= qtypes, qtypes


async def test_lab_hands_out_its_trust_anchor() -> None:
    from downgrade_lab.harness.lab import Lab

    s = scenario_from_text('title = "t"\n[dane]\ntlsa = [{usage = 3}]\n[[step]]\nexpect = "delivered"\n',
                           file="f.toml", scenario_id="f")
    async with Lab(s) as lab:
        env = lab.env
        assert env.trust_anchor is not None and "test. IN DS " in env.trust_anchor
        assert env.trust_anchor_file is not None
        assert env.trust_anchor_file.read_text() == env.trust_anchor
    plain = scenario_from_text(BASE, file="f.toml", scenario_id="f")
    async with Lab(plain) as lab:
        assert lab.env.trust_anchor is None  # no [dane]: nothing signed, as before
