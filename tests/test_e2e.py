"""End to end: the scenario files through real services and the built-in senders."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from downgrade_lab.core.record import RunRecord
from downgrade_lab.core.scenario import discover, load_scenario
from downgrade_lab.harness.runner import run_all
from downgrade_lab.senders.registry import builtin_senders
from tests.recordschema import schema_errors

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

pytestmark = pytest.mark.e2e


def result_of(record: dict[str, Any], scenario: str, sender: str) -> dict[str, Any]:
    (r,) = [r for r in record["results"] if r["scenario"] == scenario and r["sender"] == sender]
    return cast("dict[str, Any]", r)


async def test_strip_starttls_lets_the_attacker_read_the_mail() -> None:
    scenario = load_scenario(SCENARIOS / "strip" / "no-policy.toml", "strip/no-policy")
    record = (await run_all([scenario], ["opportunistic"])).as_json()
    r = result_of(record, "strip/no-policy", "opportunistic")
    (step,) = r["steps"]
    assert step["outcome"] == "delivered-plaintext"
    assert step["attacker_saw_body"] and step["attacker_saw_mail_from"]
    (stored,) = step["received"]
    assert stored["tls"] is False
    # the attacker deleted the capability: the receiver said it, the sender never heard it
    changed = [e for e in step["transcript"] if e.get("changed")]
    assert any("STARTTLS" in (e.get("said") or "") for e in changed)
    assert json.loads(json.dumps(record)) == record  # the record is plain JSON


async def test_honest_baseline_is_delivered_over_tls_with_facts() -> None:
    scenario = load_scenario(SCENARIOS / "baseline" / "healthy.toml", "baseline/healthy")
    record = (await run_all([scenario], ["opportunistic"])).as_json()
    r = result_of(record, "baseline/healthy", "opportunistic")
    assert r["verdict"] == "PASS"
    (step,) = r["steps"]
    assert step["outcome"] == "delivered-tls"
    assert not step["attacker_saw_body"] and not step["attacker_saw_mail_from"]
    (stored,) = step["received"]
    assert stored["tls"] is True
    assert stored["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert stored["cipher"]
    assert stored["sni"] == "mx1.example.test"
    assert step["dns_queries"], "the sender resolved the MX through the lab DNS"


# The whole catalogue twice over (two senders) plus its schema check: minutes, not the suite's
# 60 s per test, on a loaded 2-core machine.
@pytest.mark.timeout(240)
async def test_the_catalogue_against_the_builtin_senders() -> None:
    scenarios = discover([SCENARIOS])
    senders = builtin_senders()
    assert "opportunistic" in senders
    typed = await run_all(scenarios, senders, jobs=4)
    record = typed.as_json()
    assert record["summary"]["ERROR"] == 0, [r for r in record["results"] if r["verdict"] == "ERROR"]
    # the record of the whole catalogue: valid against the shipped schema, read back exactly
    assert schema_errors(record) == []
    assert json.loads(json.dumps(RunRecord.from_json(record).to_json())) == record
    assert RunRecord.from_json(record) == typed
    for r in record["results"]:
        if r["sender"] == "reference":
            assert r["verdict"] == "PASS", (r["scenario"], r["reason"])
        # a sender's verdict must follow from the evidence: a PASS step met its expectation
        for step in r["steps"]:
            want = {"reference": "PASS", "opportunistic": "SKIP"}.get(r["sender"])
            if "report_check" in step and want:  # TLS-RPT: the reference reports
                assert step["report_check"]["verdict"] == want, (r["scenario"], step["report_check"])
            if step["verdict"] == "PASS" and step["expect"] != "delivered":
                assert step["outcome"] == step["expect"]


async def test_a_lab_run_leaks_no_task_thread_or_key(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scenario = load_scenario(SCENARIOS / "strip" / "no-policy.toml")
    threads = threading.active_count()
    tasks = len(asyncio.all_tasks())
    seen_during_run: list[list[int]] = []

    def progress(_: object) -> None:
        modes = [k.stat().st_mode & 0o777 for k in tmp_path.glob("downgrade-lab-*/*.key")]
        seen_during_run.append(modes)

    await run_all([scenario, scenario], ["opportunistic"], jobs=2, progress=progress)
    await asyncio.sleep(0)
    assert seen_during_run and all(seen_during_run), "keys live in the private temp dir"
    assert {mode for modes in seen_during_run for mode in modes} == {0o600}
    assert not list(tmp_path.glob("downgrade-lab-*")), "the private temp dir is removed"
    assert len(asyncio.all_tasks()) == tasks
    assert threading.active_count() == threads


# One enforce scenario per attack: the attack shows on the wire, and the reference sender
# defeats it. (kind, scenario, how the run record shows the attack)
ATTACKS_ON_THE_WIRE = [
    ("strip-starttls", "strip/starttls-enforce-warm", "transcript"),
    ("reject-starttls", "strip/reject-enforce-warm", "transcript"),
    ("corrupt-starttls", "strip/corrupt-enforce-warm", "transcript"),
    ("intercept-tls", "intercept/self-signed-enforce-warm", "transcript"),
    ("inject-response", "inject/response-enforce", "transcript"),
    ("spoof-mx", "spoof/mx-enforce-warm", "dns"),
    ("drop-sts-txt", "dns/txt-dropped-cached", "dns"),
    ("drop-tlsrpt-txt", "dns/tlsrpt-dropped-enforce", "dns"),
    ("block-policy-fetch", "fetch/blocked-reset-cached", "fetch"),
]


@pytest.mark.parametrize(("kind", "scenario_id", "where"), ATTACKS_ON_THE_WIRE,
                         ids=[a[0] for a in ATTACKS_ON_THE_WIRE])
async def test_each_attack_is_on_the_wire_and_defeated(kind: str, scenario_id: str,
                                                      where: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{scenario_id}.toml", scenario_id)
    record = (await run_all([scenario], ["reference"])).as_json()
    r = result_of(record, scenario_id, "reference")
    assert r["verdict"] == "PASS", r["reason"]
    step = r["steps"][-1]
    assert any(kind == (a if isinstance(a, str) else a["kind"]) for a in step["attack"])
    if where == "transcript":
        marks = [e for e in step["transcript"] if e.get("attack") == kind or
                 (e.get("origin") == "attacker")]
        assert marks, f"no transcript entry shows {kind}"
    elif where == "dns":
        qnames = {q["qname"].lower().rstrip("."): q for q in step["dns_queries"]}
        if kind == "spoof-mx":
            mx = [q for q in step["dns_queries"] if q["qtype"] == "MX"]
            assert mx and "mx.attacker.test" in " ".join(mx[0]["answers"])
        elif kind == "drop-sts-txt":
            assert qnames["_mta-sts.example.test"]["rcode"] == "NXDOMAIN"
        else:  # the reference looks TLS-RPT up when it flushes its reports: dropped
            assert "_smtp._tls.example.test" not in qnames or \
                qnames["_smtp._tls.example.test"]["rcode"] == "NXDOMAIN"
            flushed = [q for q in step["report_dns_queries"] if q["qtype"] == "TXT"]
            assert flushed and all(q["rcode"] == "NXDOMAIN" for q in flushed)
    else:
        assert step["sender_report"]["policy"].get("fetch_error"), "the fetch failed"
    if r["steps"][-1]["expect"] == "not-delivered":
        assert step["outcome"] == "not-delivered"
        assert step["sender_report"]["state"] == "deferred"


@pytest.mark.timeout(150)
async def test_enforce_failures_leak_nothing_to_the_attacker() -> None:
    """The A-01 oracle over the whole catalogue: wherever the reference sender refused, no MAIL
    FROM and no body crossed the attacker, and the message was deferred, not bounced."""
    record = (await run_all(discover([SCENARIOS]), ["reference"], jobs=4)).as_json()
    refused = [(r["scenario"], s) for r in record["results"] for s in r["steps"]
               if s["expect"] == "not-delivered"]
    assert len(refused) > 40
    for sid, step in refused:
        assert not step["attacker_saw_mail_from"], sid
        assert not step["attacker_saw_body"], sid
        assert step["received"] == [], sid
        assert step["sender_report"]["state"] == "deferred", sid


async def test_reference_sends_sni_to_policy_host_and_mx() -> None:
    scenario = load_scenario(SCENARIOS / "baseline" / "enforce-healthy.toml", "b")
    record = (await run_all([scenario], ["reference"])).as_json()
    (step,) = result_of(record, "b", "reference")["steps"]
    (fetch,) = step["policy_fetches"]
    assert fetch["sni"] == "mta-sts.example.test" and fetch["path"] == "/.well-known/mta-sts.txt"
    (stored,) = step["received"]
    assert stored["sni"] == "mx1.example.test" and stored["tls"]
