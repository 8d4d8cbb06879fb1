"""The order in which a run starts its pairs: a silent peer's pairs first (`Step.stall_s`), then
the longest allowed, catalogue order among equals. Pure: built from model values."""

from __future__ import annotations

from dataclasses import replace

import pytest

from downgrade_lab.core.model import (
    Attack,
    DnsSpec,
    MessageSpec,
    PolicySpec,
    ReceiverSpec,
    Scenario,
    Step,
    World,
)
from downgrade_lab.core.selection import claim_order

POLICY = PolicySpec()
DNS = DnsSpec(mx=("mx1.example.test",))
STRIP = Attack("strip-starttls")
KEEP = PolicySpec(mode="keep")  # a marker: the default policy


def step(deadline: float = 10.0, attack: tuple[Attack, ...] = (), *, dns: DnsSpec = DNS,
         policy: PolicySpec | None = KEEP) -> Step:
    world = World(domain="example.test", dns=dns, policy=POLICY if policy is KEEP else policy,
                  receiver=ReceiverSpec(), message=MessageSpec())
    return Step(index=0, world=world, attack=attack, deadline_s=deadline)


@pytest.mark.parametrize(("made", "stall"), [
    # every part answers at once: no stall, whatever the attack
    (step(), 0.0),
    (step(attack=(STRIP,)), 0.0),
    (step(attack=(Attack("block-policy-fetch", how="refused"),)), 0.0),
    (step(attack=(Attack("block-policy-fetch", how="reset"),)), 0.0),
    (step(dns=replace(DNS, fault=(("_mta-sts.example.test", "servfail"),))), 0.0),
    (step(policy=None), 0.0),
    # a silent peer may hold the sender for the whole deadline
    (step(20, attack=(Attack("block-policy-fetch", how="timeout"), STRIP)), 20.0),
    (step(dns=replace(DNS, fault=(("_mta-sts.example.test", "timeout"),))), 10.0),
    (step(75, policy=replace(POLICY, trickle_s=300)), 75.0),
    # a slow policy host for its delay, never past the deadline
    (step(20, policy=replace(POLICY, delay_s=5.0)), 5.0),
    (step(3, policy=replace(POLICY, delay_s=5.0)), 3.0),
])
def test_a_steps_stall_is_what_a_silent_or_slow_peer_may_cost(made: Step, stall: float) -> None:
    assert made.stall_s() == stall


def scenario(name: str, *steps: Step) -> Scenario:
    return Scenario(id=name, path=f"{name}.toml", title=name, steps=steps)


def test_silent_peers_first_then_the_longest_allowed_then_catalogue_order() -> None:
    quick = scenario("quick", step())
    long = scenario("long", step(), step())  # 20 s allowed, nobody silent
    slow = scenario("slow", step(policy=replace(POLICY, delay_s=1.0)))
    silent = scenario("silent", step(attack=(Attack("block-policy-fetch", how="timeout"),)))
    also_quick = scenario("also-quick", step())
    order = claim_order([quick, long, slow, silent, also_quick], ["a", "b"])
    # pairs: quick 0 1, long 2 3, slow 4 5, silent 6 7, also-quick 8 9
    assert order == [6, 7, 4, 5, 2, 3, 0, 1, 8, 9]
    assert claim_order([quick, also_quick], ["a"]) == [0, 1]  # equals keep catalogue order
    assert claim_order([], ["a"]) == [] and claim_order([quick], []) == []
