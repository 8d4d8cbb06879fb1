"""`--shard K/N` (lab/core/selection.py): a stable split by a hash of the scenario id."""

from __future__ import annotations

import hashlib

import pytest

from downgrade_lab.core.scenario import discover
from downgrade_lab.core.selection import parse_shard, shard, shard_of
from tests.purity import imported_roots


@pytest.mark.parametrize(("text", "parsed"), [
    ("1/1", (1, 1)),
    ("1/2", (1, 2)),
    ("2/2", (2, 2)),
    ("3/4", (3, 4)),
    (" 2/3 ", (2, 3)),
])
def test_parse_shard(text: str, parsed: tuple[int, int]) -> None:
    assert parse_shard(text) == parsed


@pytest.mark.parametrize(("text", "why"), [
    ("3/2", "K must be from 1 to N"),
    ("0/2", "K must be from 1 to N"),
    ("1/0", "K must be from 1 to N"),
    ("0/0", "K must be from 1 to N"),
    ("x", "is not K/N"),
    ("1", "is not K/N"),
    ("1/2/3", "is not K/N"),
    ("-1/2", "is not K/N"),
    ("1.0/2", "is not K/N"),
    ("", "is not K/N"),
    ("1234567/9999999", "is not K/N"),
])
def test_bad_shards_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_shard(text)


# The split is part of the interface (CI matrices rely on it): these stay put.
@pytest.mark.parametrize(("scenario_id", "count", "index"), [
    ("strip/starttls-enforce-warm", 1, 1),
    ("strip/starttls-enforce-warm", 2, 1),
    ("strip/starttls-enforce-warm", 3, 3),
    ("strip/starttls-enforce-warm", 4, 1),
    ("baseline/healthy", 2, 1),
    ("a", 2, 1),
    ("a", 3, 2),
    ("a", 4, 3),
    ("c", 3, 3),
])
def test_shard_of_is_the_sha256_of_the_id(scenario_id: str, count: int, index: int) -> None:
    assert shard_of(scenario_id, count) == index
    digest = hashlib.sha256(scenario_id.encode()).digest()
    assert index == int.from_bytes(digest[:8], "big") % count + 1


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 200])
def test_shards_are_disjoint_and_cover_the_selection(count: int) -> None:
    catalogue = discover(["builtin"])
    parts = [shard(catalogue, k, count) for k in range(1, count + 1)]
    ids = [s.id for part in parts for s in part]
    assert sorted(ids) == sorted(s.id for s in catalogue) and len(set(ids)) == len(ids)
    for part in parts:  # each shard keeps the selection's order
        assert part == [s for s in catalogue if s in part]


def test_a_scenario_stays_in_its_shard_whatever_else_is_selected() -> None:
    catalogue = discover(["builtin"])
    strip = [s for s in catalogue if s.id.startswith("strip/")]
    for k in (1, 2, 3):
        assert shard(strip, k, 3) == [s for s in shard(catalogue, k, 3) if s in strip]


def test_selection_stays_pure() -> None:
    assert not imported_roots("lab/core/selection.py") & {"asyncio", "socket", "ssl", "os",
                                                          "pathlib", "subprocess"}
