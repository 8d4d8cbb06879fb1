"""The plugin's fixtures, used by this suite itself: `lab`, `make_lab`, `lab_scenario`, and the
service errors they re-raise (a broken lab must never pass for a conformant sender)."""

from __future__ import annotations

from pathlib import Path

import pytest

from downgrade_lab.errors import ScenarioError, ServiceError
from downgrade_lab.frontends.pytest_fixtures import LabFactory
from downgrade_lab.frontends.testing import DEFAULT_SCENARIO, CheckedLab, as_scenario
from downgrade_lab.senders.builtin.opportunistic import OpportunisticSender
from downgrade_lab.senders.builtin.reference import ReferenceSender

ROOT = Path(__file__).resolve().parent.parent
STRIP = ROOT / "scenarios" / "strip" / "no-policy.toml"


async def deliver(lab: CheckedLab, sender_cls: type = ReferenceSender, step: int = 0) -> str:
    sender = sender_cls()
    await sender.start(lab.env)
    try:
        return (await lab.run_step(sender, step)).outcome
    finally:
        await sender.stop()


async def test_the_default_lab_is_a_healthy_enforce_domain(lab: CheckedLab) -> None:
    assert lab.running and lab.env.domain == "example.test"
    assert lab.scenario.steps[0].world.policy is not None
    assert lab.scenario.steps[0].world.policy.mode == "enforce"
    assert await deliver(lab) == "delivered-tls"


@pytest.mark.parametrize("lab_scenario", [STRIP, str(STRIP), STRIP.read_text()],
                         ids=["path", "str-path", "toml-text"])
async def test_lab_scenario_is_overridable_by_parametrize(lab: CheckedLab) -> None:
    assert lab.scenario.steps[0].attack[0].kind == "strip-starttls"
    assert await deliver(lab, OpportunisticSender) == "delivered-plaintext"


async def test_make_lab_builds_labs_for_the_test_and_stops_them(make_lab: LabFactory) -> None:
    built = make_lab(STRIP)
    assert not built.running  # built, not started: `async with` starts it
    async with built as stripped, make_lab() as default:
        assert stripped.running and default.running
        assert stripped.env.ports != default.env.ports  # two labs side by side
        assert await deliver(stripped, OpportunisticSender) == "delivered-plaintext"
    assert not stripped.running and not default.running


async def test_an_error_inside_a_service_fails_the_test(make_lab: LabFactory) -> None:
    # with no source, make_lab builds the lab_scenario fixture's world: here the default one
    assert make_lab().scenario.steps == as_scenario(DEFAULT_SCENARIO).steps
    with pytest.raises(ServiceError, match="receiver: handler failed: RuntimeError"):
        async with make_lab() as lab:
            lab.receiver.record_error(RuntimeError("boom"))
    async with make_lab() as lab:  # and at once, on demand
        lab.dns.record_error(OSError("bind"))
        with pytest.raises(ServiceError, match="dns"):
            lab.check()
        lab.check()  # reported once


@pytest.mark.parametrize(("source", "words"), [
    ('title = "t"\n[[step]\n', "<lab_scenario>: bad TOML"),
    ('title = "t"\nfoo = 1\n[[step]]\nexpect = "delivered"\n', "<lab_scenario>: foo: unknown key"),
    ("no/such/file.toml", "no/such/file.toml: cannot read"),
], ids=["bad-toml", "unknown-key", "missing-file"])
def test_a_bad_lab_scenario_is_a_scenario_error(source: str, words: str) -> None:
    with pytest.raises(ScenarioError, match=words.replace("[", r"\[")):
        as_scenario(source)


def test_the_default_scenario_parses() -> None:
    assert as_scenario(DEFAULT_SCENARIO).title == "healthy domain, enforce policy"
