"""docs/conformance.md is generated from the catalogue; it must not go stale."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from downgrade_lab.core.conformance import (
    DECIDED,
    NOT_OBSERVABLE,
    REQUIREMENTS,
    ROOM,
    coverage,
    render_markdown,
)
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


def test_room_section_names_real_scenarios() -> None:
    # docs/conformance.md "Where the RFC leaves room": every scenario it names exists, and every
    # scenario tagged `room` (a graded step tolerating a second reading) is named there.
    scenarios = discover([ROOT / "scenarios"])
    ids = {s.id for s in scenarios}
    text = " ".join(" ".join(row) for row in (*ROOM, *DECIDED))
    named = set(re.findall(r"`([a-z-]+/[a-z0-9*-]+)`", text))
    assert named, "the room section names no scenario"
    for name in named:
        assert fnmatch.filter(ids, name), f"{name} names no scenario"
    for s in scenarios:
        if "room" in s.tags:
            assert any(fnmatch.fnmatch(s.id, name) for name in named), f"{s.id} is tagged room but not in ROOM"
            assert any(step.tolerate and step.because for step in s.steps), f"{s.id} tolerates nothing"
