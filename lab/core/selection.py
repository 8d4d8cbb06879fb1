"""`-k EXPR` selection of scenarios, pytest style, `--shard K/N` splits, and the order in which
the workers of one run claim its pairs. Pure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cached_property

from msgspec import Struct

from .model import Scenario

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
# Parentheses and `not`s nested deeper than this are refused: the parser recurses once per level,
# and no real selection comes near it.
MAX_DEPTH = 100


def select(scenarios: Sequence[Scenario], expr: str) -> list[Scenario]:
    """Filter with a pytest-like `-k` expression: words match (case-insensitive substring) the
    id, the title, a tag or a conformance id; `and`, `or`, `not` and parentheses combine them."""
    tokens: list[str] = _TOKEN.findall(expr)
    if not tokens:
        return list(scenarios)

    def matches(s: Scenario) -> bool:
        hay = " ".join([s.id, s.title, *s.tags, *s.rfc]).lower()
        pos = 0

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take() -> str:
            nonlocal pos
            if pos >= len(tokens):
                raise ValueError("expression ends too early")
            pos += 1
            return tokens[pos - 1]

        def p_or(depth: int = 0) -> bool:
            v = p_and(depth)
            while peek() == "or":
                take()
                v = p_and(depth) or v
            return v

        def p_and(depth: int) -> bool:
            v = p_not(depth)
            while peek() == "and":
                take()
                v = p_not(depth) and v
            return v

        def p_not(depth: int) -> bool:
            if depth > MAX_DEPTH:
                raise ValueError(f"nested too deeply (more than {MAX_DEPTH} levels of "
                                 "parentheses or `not`)")
            if peek() == "not":
                take()
                return not p_not(depth + 1)
            tok = take()
            if tok == "(":
                v = p_or(depth + 1)
                if take() != ")":
                    raise ValueError("missing )")
                return v
            if tok in ("and", "or", ")"):
                raise ValueError(f"unexpected {tok!r}")
            return tok.lower() in hay

        v = p_or()
        if pos != len(tokens):
            raise ValueError(f"unexpected {tokens[pos]!r}")
        return v

    return [s for s in scenarios if matches(s)]


_SHARD = re.compile(r"(\d{1,6})/(\d{1,6})")


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N), 1 <= K <= N; ValueError saying what is wrong."""
    m = _SHARD.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not K/N (e.g. 1/4)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"{text!r}: K must be from 1 to N, and N at least 1")
    return index, count


def shard_of(scenario_id: str, count: int) -> int:
    """Which of `count` shards (1-based) a scenario belongs to: a hash of its id, so a scenario
    stays in its shard whatever else the selection holds (adding a scenario moves no other)."""
    digest = hashlib.sha256(scenario_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def shard(scenarios: Sequence[Scenario], index: int, count: int) -> list[Scenario]:
    """Shard `index` of `count` of the selection, in its order: the shards 1..count are
    disjoint and together are the whole selection."""
    return [s for s in scenarios if shard_of(s.id, count) == index]


def claim_order(scenarios: Sequence[Scenario], senders: Sequence[str]) -> list[int]:
    """The order in which a run starts its pairs (indices in catalogue order, a scenario's
    senders side by side), and in which the workers of one run (`--isolate -j N`, `--workers
    P`) claim them: the pairs that may wait longest on a silent peer first (`Step.stall_s`),
    so they wait while the rest run instead of setting the wall time at the end; then the
    longest allowed (the sum of the step deadlines: a real MTA may wait out a 75 s deadline,
    or answer at once); catalogue order among equals, so every worker computes the same list.
    Claimed one at a time as a worker gets free (`workers.Claims`), not dealt out in advance:
    how long a pair takes is known only when it has run."""
    costs = [_cost(s) for s in scenarios for _ in senders]
    return sorted(range(len(costs)), key=costs.__getitem__)


def _cost(scenario: Scenario) -> tuple[float, float]:
    """The sort key of a scenario's pairs: its stall, then its allowed time, both negated."""
    return (-sum(step.stall_s() for step in scenario.steps),
            -sum(step.deadline_s for step in scenario.steps))


# Where the claims of a run stand: the next unclaimed pair of each queue (ClaimPlan.rest,
# ClaimPlan.stalls) and how many pairs of `stalls` are running.
ClaimState = tuple[int, int, int]
START: ClaimState = (0, 0, 0)


class ClaimPlan(Struct, frozen=True, dict=True):
    """How the slots of one run (its workers' pair slots together) claim the pairs: in
    `claim_order`, but at most `limit` of the pairs that may wait on a silent peer (`stalls`)
    at once, so the other slots keep the cores busy instead of every slot waiting out a
    silent peer together; once the rest are all claimed, the stalls go without a limit."""

    rest: tuple[int, ...]
    stalls: tuple[int, ...]
    limit: int

    def pick(self, state: ClaimState, finished: int | None) -> tuple[int | None, ClaimState]:
        """The next pair for a slot that just `finished` its pair (None: its first claim), and
        the state after it. None when every pair has been claimed."""
        rest, stall, running = state
        if finished is not None and finished in self._stall_set:
            running -= 1
        if stall < len(self.stalls) and (running < self.limit or rest >= len(self.rest)):
            return self.stalls[stall], (rest, stall + 1, running + 1)
        if rest < len(self.rest):
            return self.rest[rest], (rest + 1, stall, running)
        return None, (rest, stall, running)

    @cached_property
    def _stall_set(self) -> frozenset[int]:
        return frozenset(self.stalls)


def claim_plan(scenarios: Sequence[Scenario], senders: Sequence[str], slots: int) -> ClaimPlan:
    """The plan of a run with `slots` pair slots in all: half of them, at least one, may wait
    on a silent peer at once."""
    costs = [_cost(s) for s in scenarios for _ in senders]
    order = sorted(range(len(costs)), key=costs.__getitem__)  # claim_order, costs kept
    return ClaimPlan(tuple(i for i in order if costs[i][0] == 0),
                     tuple(i for i in order if costs[i][0] < 0), max(1, slots // 2))
