"""Hand-written lab tests: a `Lab` that re-raises its services' errors and runs one step for
you. The pytest fixtures (`lab`, `make_lab`; lab/frontends/pytest_fixtures.py) hand these out, and they
work without pytest too (`async with CheckedLab(as_scenario(text)) as lab:`)."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from msgspec import Struct

from ..core.defaults import DEFAULT_SCENARIO
from ..core.model import Scenario, Step
from ..core.scenario import load_scenario, scenario_from_text
from ..errors import LabError
from ..harness.lab import Lab
from ..senders.base import Sender

__all__ = ["DEFAULT_SCENARIO", "CheckedLab", "ScenarioSource", "StepRun", "as_scenario"]

ScenarioSource = Scenario | str | os.PathLike[str]


def as_scenario(source: ScenarioSource, *, name: str = "lab_scenario") -> Scenario:
    """A `Scenario` from a Scenario, a path to a .toml file, or TOML text. A str is a path when
    it is one line ending in `.toml`, else TOML text (then its id and file are `name`)."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, os.PathLike) or ("\n" not in source and source.endswith(".toml")):
        return load_scenario(Path(source))
    return scenario_from_text(source, file=f"<{name}>", scenario_id=name)


class StepRun(Struct, frozen=True):
    """One step as the runner judged it: `record` is the step's entry of the run record
    (DESIGN §6: transcript, connections, received, sender_report, ...)."""

    verdict: str
    reason: str
    outcome: str
    record: dict[str, Any]


class CheckedLab(Lab):
    """A `Lab` that raises, on a clean exit from `async with`, the first error a service
    recorded inside a handler (pytest-httpserver's `check_handler_errors`), so a broken lab
    never passes for a conformant sender."""

    @property
    def running(self) -> bool:
        try:
            return self.env is not None
        except LabError:  # `env` raises while the lab is stopped
            return False

    def check(self) -> None:
        """Re-raise (as `ServiceError`) the first error a lab service recorded, now."""
        for service in (self.receiver, self.policyhost, self.dns, self.tlsrpt, self.proxy):
            if service is not None:
                service.check()

    async def run_step(self, sender: Sender, step: int | Step = 0) -> StepRun:
        """Set the world of `step` (an index into the scenario's steps, or a Step), let the
        started `sender` deliver one probe message, and judge it as `downgrade-lab run` does."""
        from ..harness.runner import _run_step  # the runner's own step, so verdicts match the matrix

        if isinstance(step, int):
            step = self.scenario.steps[step]
        judgement, record = await _run_step(self, sender, step)
        return StepRun(judgement.verdict, judgement.reason, record.outcome, record.to_json())

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
        if exc is None:
            self.check()
