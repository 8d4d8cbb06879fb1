"""The order in which a run starts its pairs: a silent peer's pairs first (`Step.stall_s`), then
the longest allowed, catalogue order among equals. Pure: built from model values."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

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
from downgrade_lab.core.selection import START, ClaimPlan, claim_order, claim_plan

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


def drive(plan: ClaimPlan, events: list[int | None]) -> list[int | None]:
    """Claims in turn: each event is the pair a slot just finished (None: a first claim)."""
    state, got = START, []
    for finished in events:
        pair, state = plan.pick(state, finished)
        got.append(pair)
    return got


PLAN = ClaimPlan(rest=(10, 11, 12), stalls=(1, 2, 3), limit=2)


@pytest.mark.parametrize(("events", "got"), [
    # four slots start: two stalls (the limit), then the rest
    ([None, None, None, None], [1, 2, 10, 11]),
    # a stall ends: its slot takes the next stall
    ([None, None, None, 1], [1, 2, 10, 3]),
    # a quick pair ends while two stalls run: the next of the rest, not a third stall
    ([None, None, None, 10], [1, 2, 10, 11]),
    # the rest all claimed: the stalls go without a limit, then nothing is left
    ([None, None, None, 10, 11, 12], [1, 2, 10, 11, 12, 3]),
    ([None, None, None, 10, 11, 12, 3, 1], [1, 2, 10, 11, 12, 3, None, None]),
])
def test_at_most_limit_stalls_run_at_once(events: list[int | None], got: list[int | None]) -> None:
    assert drive(PLAN, events) == got


def test_every_pair_is_claimed_once_whatever_the_order_of_ends() -> None:
    plan = ClaimPlan(rest=tuple(range(5, 20)), stalls=(0, 1, 2, 3, 4), limit=1)
    state, running, seen = START, [], []
    for _ in range(3):  # three slots
        pair, state = plan.pick(state, None)
        assert pair is not None
        running.append(pair)
    while running:
        finished = running.pop(0)
        pair, state = plan.pick(state, finished)
        if pair is not None:
            running.append(pair)
            assert sum(p in plan.stalls for p in running) <= 1 or state[0] == len(plan.rest)
        seen.append(finished)
    assert sorted(seen) == list(range(20))


def test_the_plan_of_a_run_splits_its_pairs_and_allows_half_its_slots() -> None:
    quick = scenario("quick", step())
    silent = scenario("silent", step(attack=(Attack("block-policy-fetch", how="timeout"),)))
    plan = claim_plan([quick, silent], ["a", "b"], slots=4)
    assert plan == ClaimPlan(rest=(0, 1), stalls=(2, 3), limit=2)
    assert claim_plan([quick], ["a"], slots=1).limit == 1  # one slot: it may still wait
