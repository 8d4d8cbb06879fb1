"""Runs split across processes (`--workers P`, `--isolate -j N`): `runner.shards` gives every
pair to exactly one worker, and the merged record equals the one-process record."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from downgrade_lab.core.model import Scenario
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.frontends.cli import Environment, main
from downgrade_lab.harness.runner import shards

ROOT = Path(__file__).resolve().parent.parent
PICKS = ["baseline/healthy", "strip/starttls-enforce-warm", "fetch/slow-but-in-time",
         "tlsrpt/cached-fetch-failure"]


def scenarios() -> list[Scenario]:
    return [load_scenario(ROOT / "scenarios" / f"{p}.toml", p) for p in PICKS]


@pytest.mark.parametrize("n", [1, 2, 3, 8], ids=["one", "two", "three", "more-than-pairs"])
def test_every_pair_goes_to_exactly_one_worker(n: int) -> None:
    got = shards(scenarios(), ["reference", "opportunistic"], n)
    assert len(got) == n
    assert sorted(i for share in got for i in share) == list(range(len(PICKS) * 2))
    assert all(share == sorted(share) for share in got)  # catalogue order inside a share


def test_the_longest_pairs_are_spread_over_the_workers() -> None:
    got = shards(scenarios(), ["reference", "opportunistic"], 2)
    warm = PICKS.index("strip/starttls-enforce-warm") * 2  # two steps: 20 s allowed, x2 senders
    assert not any({warm, warm + 1} <= set(share) for share in got)


def test_workers_record_equals_one_process(tmp_path: Path) -> None:
    paths = [str(ROOT / "scenarios" / f"{p}.toml") for p in PICKS]
    records: list[dict[str, Any]] = []
    for extra in ([], ["--workers", "2"]):
        out = tmp_path / f"record{len(records)}.json"
        code = main(["run", *paths, "--json", str(out), *extra],
                    Environment(stdout=io.StringIO(), stderr=io.StringIO()))
        assert code in (0, 1)
        records.append(json.loads(out.read_text()))
    cells = [[(r["scenario"], r["sender"], r["verdict"], [s["outcome"] for s in r["steps"]])
              for r in rec["results"]] for rec in records]
    assert cells[0] == cells[1]
    assert records[0]["summary"] == records[1]["summary"]


def test_workers_must_be_at_least_one() -> None:
    err = io.StringIO()
    code = main(["run", str(ROOT / "scenarios" / "baseline" / "healthy.toml"), "--workers", "0"],
                Environment(stdout=io.StringIO(), stderr=err))
    assert code == 2 and "--workers takes a number of processes from 1 up" in err.getvalue()
