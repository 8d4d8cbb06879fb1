"""The async `lab` fixture, registered by lab/frontends/pytest_plugin.py only where pytest-asyncio runs
(auto or strict mode): pytest_asyncio is imported here, never at plugin load."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

if TYPE_CHECKING:
    from ..harness.pki import PKI
    from .testing import CheckedLab, ScenarioSource


@pytest_asyncio.fixture
async def lab(lab_scenario: ScenarioSource, lab_pki: PKI) -> AsyncIterator[CheckedLab]:
    """A started lab for the current `lab_scenario` (function-scoped), in the test's event
    loop: `lab.env` is what a sender needs, `await lab.run_step(sender)` runs a step. Errors
    its services recorded fail the test at teardown."""
    from .testing import CheckedLab, as_scenario

    async with CheckedLab(as_scenario(lab_scenario), pki=lab_pki) as running:
        yield running
