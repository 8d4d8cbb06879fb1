"""A step has one deadline: what the sender takes and what the lab then waits for the evidence
share it. A sender that cannot say what became of the message (state `unknown`) at the deadline
is not given a second one: `not-delivered` means "not stored by the deadline". Real services,
a sender of the test's own that never sends anything."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from downgrade_lab.api import LabEnv, Message, SendReport, remaining
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.harness.runner import run_all

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 1.0

pytestmark = pytest.mark.e2e


class _Silent:
    capabilities: frozenset[str] = frozenset()
    loopback = True

    async def start(self, env: LabEnv) -> None:
        pass

    async def stop(self) -> None:
        pass


class WaitsOutTheDeadline(_Silent):
    """Like a real MTA whose log shows no verdict: says `unknown` when the deadline comes."""

    name = "waits-out"

    async def send(self, message: Message, deadline: float) -> SendReport:
        await asyncio.sleep(remaining(deadline))
        return SendReport("unknown", "no verdict in the log by the deadline")


class HandsOver(_Silent):
    """Like a program that queued the message and exited: `unknown` at once."""

    name = "hands-over"

    async def send(self, message: Message, deadline: float) -> SendReport:
        return SendReport("unknown", "queued")


@pytest.mark.parametrize("sender", ["WaitsOutTheDeadline", "HandsOver"])
async def test_a_step_ends_at_its_deadline_not_a_second_one_later(tmp_path: Path,
                                                                    sender: str) -> None:
    path = tmp_path / "one.toml"
    base = (ROOT / "scenarios" / "baseline" / "healthy.toml").read_text()
    path.write_text(base.replace("[[step]]", f"[[step]]\ndeadline_s = {DEADLINE_S}", 1))
    scenario = load_scenario(path, "one")
    assert [s.deadline_s for s in scenario.steps] == [DEADLINE_S]
    started = time.monotonic()
    record = await run_all([scenario], [f"tests.test_deadline:{sender}"])
    took = time.monotonic() - started
    (pair,) = record.results
    (step,) = pair.steps
    assert step.outcome == "not-delivered" and pair.verdict == "FAIL"
    assert DEADLINE_S <= took < 2 * DEADLINE_S  # the lab waited for the evidence, once
