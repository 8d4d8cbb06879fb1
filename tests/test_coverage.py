"""docs/conformance.md is generated from the catalogue; it must not go stale."""

from __future__ import annotations

from pathlib import Path

from downgrade_lab.core.conformance import NOT_OBSERVABLE, REQUIREMENTS, coverage, render_markdown
from downgrade_lab.core.scenario import discover

ROOT = Path(__file__).resolve().parent.parent


def test_conformance_page_is_current() -> None:
    page = render_markdown(discover([ROOT / "scenarios"]))
    current = (ROOT / "docs" / "conformance.md").read_text()
    assert current == page, "docs/conformance.md is stale: run `make conformance`"


def test_every_scenario_cites_known_ids() -> None:
    for s in discover([ROOT / "scenarios"]):
        assert s.rfc, f"{s.id} cites no CONFORMANCE id"
        unknown = set(s.rfc) - set(REQUIREMENTS)
        assert not unknown, f"{s.id} cites unknown ids {unknown}"


def test_uncovered_ids_have_a_reason() -> None:
    table = coverage(discover([ROOT / "scenarios"]))
    uncovered = {rid for rid, ids in table.items() if not ids and not rid.startswith("R-")}
    assert uncovered <= set(NOT_OBSERVABLE), uncovered - set(NOT_OBSERVABLE)
