"""TLS reporting end to end: the reference sender reports what the attacker did, by HTTPS and by
mail; a sender without `tls-rpt` is SKIP for the check; and a sender that reports nothing, a
broken report or to a record it should have ignored is caught (the broken twins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import downgrade_lab.harness.runner
import downgrade_lab.senders.builtin.tlsreporter as tlsreporter
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.core.tlsrpt import TlsRptRecord, build_report, parse_tlsrpt_record
from downgrade_lab.harness.runner import run_all
from downgrade_lab.senders.builtin.reference import ReferenceSender

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

pytestmark = pytest.mark.e2e


async def run(scenario_id: str, sender: str = "reference") -> dict[str, Any]:
    scenario = load_scenario(SCENARIOS / f"{scenario_id}.toml", scenario_id)
    (result,) = (await run_all([scenario], [sender])).as_json()["results"]
    return dict(result)


async def test_reference_reports_a_stripped_starttls_both_ways() -> None:
    r = await run("strip/starttls-testing")
    assert r["verdict"] == "PASS", r["reason"]
    warm, attacked = r["steps"]
    assert warm["tlsrpt_reports"] and "report_check" not in warm  # reported, not judged
    assert attacked["report_check"] == {"verdict": "PASS", "reason": ""}
    https, mail = sorted(attacked["tlsrpt_reports"], key=lambda x: x["channel"])
    assert https["channel"] == "https" and https["sni"] == "tlsrpt.example.test"
    assert https["media_type"] == "application/tlsrpt+gzip" and https["valid"]
    assert mail["channel"] == "mail" and mail["valid"] and mail["tls"] is False  # in the clear
    assert mail["tls_report_domain"] == "example.test" and mail["dkim"]["body_hash_ok"]
    assert mail["dkim"]["verified"]  # against the key the reference sender published
    (policy,) = https["report"]["policies"]
    assert policy["policy"]["policy-type"] == "sts" and "mode: testing" in policy["policy"]["policy-string"]
    assert policy["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 1}
    assert policy["failure-details"][0]["result-type"] == "starttls-not-supported"
    assert mail["report"]["policies"] == https["report"]["policies"]
    assert attacked["report_connections"], "the mailed report went through the attacker's proxy"


async def test_enforce_report_does_not_count_as_a_leak() -> None:
    r = await run("tlsrpt/mailed-through-stripped-mx")
    assert r["verdict"] == "PASS", r["reason"]
    step = r["steps"][-1]
    assert step["outcome"] == "not-delivered"
    assert not step["attacker_saw_mail_from"] and not step["attacker_saw_body"]
    (mail,) = step["tlsrpt_reports"]
    assert mail["channel"] == "mail" and mail["valid"] and mail["tls"] is False
    assert any(c["saw_mail_from"] for c in step["report_connections"])  # the report's own envelope
    # ... and the story draws that delivery: the stripped EHLO reply and the report's MAIL FROM
    said = [e["said"] for e in step["report_transcript"]]
    assert any("STARTTLS" in s for s in said) and any(s.startswith("MAIL FROM") for s in said)
    from downgrade_lab.frontends.report.html import to_html

    page = to_html({"results": [r], "summary": {}, "duration_s": 0})
    assert "The TLS report's own delivery, through the attacker" in page


async def test_a_sender_without_tls_rpt_is_skipped_not_failed() -> None:
    r = await run("strip/starttls-testing", "opportunistic")
    assert r["verdict"] == "PASS"
    assert r["steps"][-1]["report_check"] == {"verdict": "SKIP", "reason": "sender lacks tls-rpt"}
    assert r["steps"][-1]["tlsrpt_reports"] == []


class _Silent(ReferenceSender):
    """Claims tls-rpt, never reports."""

    async def flush_reports(self) -> list[dict[str, Any]]:
        return []


async def test_a_sender_that_does_not_report_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downgrade_lab.harness.runner, "make_sender", lambda name: _Silent())
    r = await run("strip/starttls-testing")
    assert r["verdict"] == "FAIL"
    assert r["reason"] == ("step 2: TLS-RPT: no TLS report arrived (expected result types: "
                           "starttls-not-supported)")
    assert r["steps"][-1]["outcome"] == "delivered-plaintext"  # the delivery itself was right


async def test_a_wrong_count_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def miscounted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        doc = build_report(*args, **kwargs)  # what tlsreporter imports from the core
        doc["policies"][0]["summary"]["total-failure-session-count"] = 0
        return doc

    monkeypatch.setattr(tlsreporter, "build_report", miscounted)
    r = await run("strip/starttls-testing")
    assert r["verdict"] == "FAIL"
    assert "policies[0].summary.total-failure-session-count: 0 but failure-details count 1" in r["reason"]
    assert not any(x["valid"] for x in r["steps"][-1]["tlsrpt_reports"])  # kept, judged invalid


async def test_a_sender_that_ignores_r01_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def first_one(records: list[str]) -> TlsRptRecord:
        return parse_tlsrpt_record([r for r in records if r.startswith("v=TLSRPTv1")][0])

    monkeypatch.setattr(tlsreporter, "parse_tlsrpt_records", first_one)
    r = await run("tlsrpt/several-records")
    assert r["verdict"] == "FAIL"
    assert "although the domain has no usable TLS-RPT record (R-01)" in r["reason"]
