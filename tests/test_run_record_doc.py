"""docs/run-record.md documents every key a real run record has (the record only grows, so a
new key needs a line there)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reportrun import ROOT, real_record

DOC = (ROOT / "docs" / "run-record.md").read_text()

pytestmark = pytest.mark.e2e  # a real run through the lab


def _keys(rows: list[Any]) -> set[str]:
    return {k for row in rows if isinstance(row, dict) for k in row}


@pytest.fixture(scope="module")
def levels() -> dict[str, set[str]]:
    record = real_record(capture=True)
    results = record["results"]
    steps = [s for r in results for s in r["steps"]]
    reports = [s["sender_report"] for s in steps]
    return {
        "top level": set(record),
        "result": _keys(results),
        "step": _keys(steps),
        "sender_report": _keys(reports),
        "attempts": _keys([a for rep in reports for a in rep.get("attempts") or []]),
        "policy": _keys([rep["policy"] for rep in reports if "policy" in rep]),
        "received": _keys([m for s in steps for m in s["received"]]),
        "dns_queries": _keys([q for s in steps for q in s["dns_queries"]]),
        "policy_fetches": _keys([f for s in steps for f in s["policy_fetches"]]),
        "connections": _keys([c for s in steps for c in s["connections"]]),
        "wire": _keys([w for s in steps for c in s["connections"] for w in c.get("wire") or []]),
        "transcript": _keys([e for s in steps for e in s["transcript"]]),
        "tlsrpt_reports": _keys([t for s in steps for t in s.get("tlsrpt_reports") or []]),
    }


@pytest.mark.parametrize("level", ["top level", "result", "step", "sender_report", "attempts",
                                   "policy", "received", "dns_queries", "policy_fetches",
                                   "connections", "wire", "transcript", "tlsrpt_reports"])
def test_every_key_is_documented(levels: dict[str, set[str]], level: str) -> None:
    missing = sorted(k for k in levels[level] if f"`{k}`" not in DOC)
    assert not missing, f"docs/run-record.md does not document {level} keys {missing}"


def test_the_run_had_something_to_document(levels: dict[str, set[str]]) -> None:
    # the twin: an empty record would document itself trivially
    for level in ("step", "connections", "transcript", "wire", "attempts", "policy"):
        assert levels[level], level
