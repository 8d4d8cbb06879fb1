"""Runs scenarios x senders and collects run records (DESIGN §6).

Each (scenario, sender) pair gets its own `Lab` on ephemeral loopback ports, so pairs run side
by side (`-j N`) without sharing anything but the run's PKI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.model import Scenario, Step
from ..core.verdict import (
    Judgement,
    combine,
    exit_code,
    judge_report,
    judge_step,
    outcome,
    summary,
    with_report,
)
from ..errors import LabError
from ..senders.base import Message, Sender, SendReport
from ..senders.registry import label, make_sender
from .lab import Lab
from .pki import PKI
from .topology import LOOPBACK, Topology

# States after which the sender will not deliver this message any more: the wait ends there.
FINAL_STATES = frozenset({"delivered", "deferred", "bounced"})
# Grace for a sender that ignores its deadline before the lab gives up on it.
DEADLINE_GRACE_S = 2.0
# How long a sender may take to send its TLS reports at the end of a step (RFC 8460 §4.1's
# daily schedule, squeezed into the step).
FLUSH_TIMEOUT_S = 10.0


@dataclass
class PairResult:
    scenario: Scenario
    sender: str
    judgement: Judgement
    steps: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.id,
            "sender": self.sender,
            "verdict": self.judgement.verdict,
            "reason": self.judgement.reason,
            "title": self.scenario.title,
            "rfc": list(self.scenario.rfc),
            "tags": list(self.scenario.tags),
            "file": self.scenario.path,
            "duration_s": round(self.duration_s, 3),
            "steps": self.steps,
        }


@dataclass
class RunRecord:
    results: list[PairResult]
    duration_s: float = 0.0

    def counts(self) -> dict[str, int]:
        return summary(r.judgement.verdict for r in self.results)

    def exit_code(self) -> int:
        return exit_code(self.counts())

    def as_json(self) -> dict[str, Any]:
        return {
            "results": [r.as_json() for r in self.results],
            "summary": self.counts(),
            "duration_s": round(self.duration_s, 3),
        }


def attack_json(step: Step) -> list[Any]:
    """A step's attacks as the run record shows them: a bare name, or a table when it has
    hosts or options (the scenario's own spelling)."""
    out: list[Any] = []
    for a in step.attack:
        if a.hosts is None and a.kind in ("strip-starttls", "reject-starttls", "corrupt-starttls",
                                          "inject-response", "drop-sts-txt", "drop-tlsrpt-txt"):
            out.append(a.kind)
        else:
            out.append({k: v for k, v in (("kind", a.kind), ("hosts", list(a.hosts) if a.hosts
                        is not None else None), ("cert", a.cert), ("how", a.how)) if v is not None})
    return out


async def _send(sender: Sender, message: Message, step: Step) -> SendReport:
    deadline = time.monotonic() + step.deadline_s
    try:
        return await asyncio.wait_for(sender.send(message, deadline),
                                      timeout=step.deadline_s + DEADLINE_GRACE_S)
    except TimeoutError:
        return SendReport("unknown", f"the sender did not finish within {step.deadline_s:g} s")


async def run_pair(scenario: Scenario, sender_spec: str, pki: PKI, *,
                   capture: bool = False, topology: Topology = LOOPBACK) -> PairResult:
    """One scenario against one sender (a name, module:Class or a profile file), every step in
    order, sharing the sender's state. `capture`: keep the bytes that crossed the attacker in
    the record (for the pcap export)."""
    started = time.monotonic()
    sender_name = label(sender_spec)  # the matrix column: a profile's or a class's own name
    sender = make_sender(sender_spec)
    missing = scenario.needs() - sender.capabilities
    if missing:
        why = f"sender lacks {', '.join(sorted(missing))}"
        return PairResult(scenario, sender_name, Judgement("SKIP", why))
    judgements: list[Judgement] = []
    steps: list[dict[str, Any]] = []
    try:
        async with Lab(scenario, pki=pki, capture=capture, topology=topology) as lab:
            await sender.start(lab.env)
            try:
                for step in scenario.steps:
                    judgement, record = await _run_step(lab, sender, step)
                    judgements.append(judgement)
                    steps.append(record)
            finally:
                await sender.stop()
    except LabError as exc:
        judgements.append(Judgement("ERROR", f"lab error: {exc}"))
    except Exception as exc:  # noqa: BLE001 - one broken pair must not take the matrix down
        judgements.append(Judgement("ERROR", f"internal error: {exc!r}"))
    worst = combine(judgements)
    if worst.verdict != "PASS" and len(scenario.steps) > 1:
        index = judgements.index(worst)
        worst = Judgement(worst.verdict, f"step {index + 1}: {worst.reason}")
    return PairResult(scenario, sender_name, worst, steps, time.monotonic() - started)


async def _run_step(lab: Lab, sender: Sender, step: Step) -> tuple[Judgement, dict[str, Any]]:
    if step.after_s:
        advance = getattr(sender, "advance_clock", None)
        if advance is not None:
            await advance(step.after_s)
    await lab.prepare(step)
    message = Message.make(step.world.message.to, step.world.message.headers)
    report = await _send(sender, message, step)
    if report.state not in FINAL_STATES:
        # The sender cannot say (a real MTA still retrying): wait on the evidence instead.
        await lab.wait_for(message.token, time.monotonic() + step.deadline_s)
    evidence, observed = lab.collect(step, message, report)
    check, reports = await _tls_reports(lab, sender, step)
    judgement = with_report(judge_step(step.expect, step.tolerate, evidence, step.because), check)
    record: dict[str, Any] = {
        "attack": attack_json(step),
        "expect": step.expect,
        "outcome": outcome(evidence),
        "verdict": judgement.verdict,
        "reason": judgement.reason,
        "attacker_saw_mail_from": evidence.attacker_saw_mail_from,
        "attacker_saw_body": evidence.attacker_saw_body,
        "token": message.token,
        "sender_report": report.as_json(),
        **observed,
        **reports,
    }
    if step.tolerate:
        record["tolerate"] = list(step.tolerate)
    if step.because:
        record["because"] = step.because
    return judgement, record


async def _tls_reports(lab: Lab, sender: Sender, step: Step
                       ) -> tuple[Judgement | None, dict[str, Any]]:
    """Let the sender flush its TLS reports, collect what arrived and judge the step's `report`
    expectation. Runs after `lab.collect()`: a report mailed in the clear through the attacker
    (R-03 demands it) is not the probe message's envelope crossing it (A-01)."""
    extra: dict[str, Any] = {}
    flush = getattr(sender, "flush_reports", None)
    if flush is not None:
        try:
            sent = await asyncio.wait_for(flush(), FLUSH_TIMEOUT_S)
            if sent is not None:
                extra["report_flush"] = sent  # the sender's own account of what it sent
        except TimeoutError:
            extra["report_flush"] = f"flush_reports() did not finish within {FLUSH_TIMEOUT_S:g} s"
    try:
        seen, observed = lab.collect_reports(step)
    except LabError as exc:
        return Judgement("ERROR", f"lab error: {exc}"), extra
    check = judge_report(step.report, seen, "tls-rpt" in sender.capabilities)
    if check is not None:
        extra["report_check"] = {"verdict": check.verdict, "reason": check.reason}
    return check, extra | observed


ProgressFn = Callable[[PairResult], None]


async def run_all(scenarios: Sequence[Scenario], senders: Sequence[str], *, jobs: int = 1,
                  progress: ProgressFn | None = None, capture: bool = False,
                  topology: Topology = LOOPBACK) -> RunRecord:
    """Every scenario against every sender, at most `jobs` pairs at once, results in order.
    The isolated topology has fixed addresses and ports: one pair at a time."""
    started = time.monotonic()
    pairs = [(s, name) for s in scenarios for name in senders]
    results: list[PairResult | None] = [None] * len(pairs)
    gate = asyncio.Semaphore(1 if topology.isolated else max(1, jobs))
    pki = PKI()
    try:
        async def one(i: int, scenario: Scenario, name: str) -> None:
            async with gate:
                result = await run_pair(scenario, name, pki, capture=capture, topology=topology)
            results[i] = result
            if progress is not None:
                progress(result)

        async with asyncio.TaskGroup() as tg:
            for i, (scenario, name) in enumerate(pairs):
                tg.create_task(one(i, scenario, name))
    finally:
        pki.close()
    done = [r for r in results if r is not None]
    return RunRecord(done, time.monotonic() - started)
