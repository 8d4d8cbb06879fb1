"""The plugin's fixtures for hand-written tests, in pytest-httpserver's shape (STYLE.md):

- `lab_scenario`: the overridable config fixture. Override it in a conftest, a module or with
  `@pytest.mark.parametrize("lab_scenario", [...])`; it returns a Scenario, TOML text or a path.
- `lab_pki`: the lab CA, made once per session (the costly part, like httpserver's server).
- `make_lab`: a factory, `async with make_lab(text_or_path) as lab:`; works under any runner of
  async tests, since the lab lives in the test's own event loop.
- `lab` (lab/frontends/pytest_async.py, registered where pytest-asyncio runs): a started lab for the
  current `lab_scenario`, function-scoped.

Errors recorded inside the lab's services are re-raised in the test (`CheckedLab.check()`, also
on leaving `async with`). Imports of the lab itself are lazy: this module loads in every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..harness.pki import PKI
    from .testing import CheckedLab, ScenarioSource


@pytest.fixture
def lab_scenario() -> ScenarioSource:
    """The world `lab` and `make_lab()` build: override it. Default: a healthy domain with an
    enforce policy and one honest step."""
    from ..core.defaults import DEFAULT_SCENARIO

    return DEFAULT_SCENARIO


@pytest.fixture(scope="session")
def lab_pki() -> Iterator[PKI]:
    """The lab CA and certificates, shared by every lab of the session."""
    from ..harness.pki import PKI

    pki = PKI()
    yield pki
    pki.close()


class LabFactory:
    """`make_lab(source=None, **lab_options)` -> a `CheckedLab`, not yet started: use it as
    `async with make_lab(...) as lab:`. `source` defaults to the `lab_scenario` fixture."""

    def __init__(self, pki: PKI, default: ScenarioSource) -> None:
        self._pki = pki
        self._default = default
        self._labs: list[CheckedLab] = []

    def __call__(self, source: ScenarioSource | None = None, **options: Any) -> CheckedLab:
        from .testing import CheckedLab, as_scenario

        scenario = as_scenario(self._default if source is None else source,
                               name="make_lab" if source is not None else "lab_scenario")
        lab = CheckedLab(scenario, pki=self._pki, **options)
        self._labs.append(lab)
        return lab

    def left_running(self) -> list[CheckedLab]:
        return [lab for lab in self._labs if lab.running]


@pytest.fixture
def make_lab(lab_pki: PKI, lab_scenario: ScenarioSource) -> Iterator[LabFactory]:
    """A factory of labs: `async with make_lab(toml_text_or_path) as lab:`."""
    factory = LabFactory(lab_pki, lab_scenario)
    yield factory
    # A lab started without `async with` cannot be stopped from here (its sockets belong to
    # the test's event loop, gone by now): say so instead of leaking them silently.
    leftovers = factory.left_running()
    if leftovers:
        pytest.fail(f"make_lab: {len(leftovers)} lab(s) started but not stopped; "
                    "use `async with make_lab(...) as lab:`", pytrace=False)
