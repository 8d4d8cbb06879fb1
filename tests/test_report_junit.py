"""JUnit XML: it parses, and its counts and cases match the run record."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from downgrade_lab.frontends.report.junit import to_junit
from tests.reportrun import EVIL, hostile_record, real_record


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    return real_record()


@pytest.mark.e2e  # a real run through the lab
def test_the_junit_file_parses_and_its_counts_match_the_run(record: dict[str, Any]) -> None:
    suite = ET.fromstring(to_junit(record))
    cases = suite.findall("testcase")
    counts = record["summary"]
    assert int(suite.get("tests", -1)) == len(cases) == len(record["results"]) == 4
    assert int(suite.get("failures", -1)) == len(suite.findall("testcase/failure")) == counts["FAIL"]
    assert int(suite.get("errors", -1)) == len(suite.findall("testcase/error")) == counts["ERROR"]
    assert int(suite.get("skipped", -1)) == len(suite.findall("testcase/skipped")) == counts["SKIP"]
    assert counts["FAIL"] == 1, "the opportunistic sender fails the warm enforce strip"
    for case, result in zip(cases, record["results"], strict=True):
        assert case.get("name") == result["scenario"]
        assert case.get("classname") == f"downgrade-lab.{result['sender']}"
        failure = case.find("failure")
        if result["verdict"] == "FAIL":
            assert failure is not None and failure.get("message") == result["reason"]
            assert "delivered where the attacker read it" in (failure.text or "")
        else:
            assert failure is None
        out = case.find("system-out")
        assert out is not None and json.loads(out.text or "") == result


@pytest.mark.e2e  # a real run through the lab
def test_wire_bytes_are_not_attached(record: dict[str, Any]) -> None:
    captured = json.loads(json.dumps(record))
    captured["results"][0]["steps"][0]["connections"][0]["wire"] = [{"data": "QUJD"}]
    case = ET.fromstring(to_junit(captured)).find("testcase")
    assert case is not None
    attached = json.loads(case.findtext("system-out") or "")
    assert "wire" not in attached["steps"][0]["connections"][0]


@pytest.mark.parametrize("reason", [
    EVIL,
    "reply \x00 with a NUL",
    "]]></failure><injected/>",
    "surrogate \udcff byte",
], ids=["markup-and-escape", "nul", "cdata", "surrogate"])
def test_hostile_reasons_still_give_a_parseable_file(reason: str) -> None:
    suite = ET.fromstring(to_junit(hostile_record(reason=reason)))
    failure = suite.find("testcase/failure")
    assert failure is not None and suite.find(".//injected") is None
    assert "\x00" not in (failure.get("message") or "")
