"""Runs scenarios x senders and collects run records (DESIGN §6).

Each (scenario, sender) pair gets its own `Lab` on ephemeral loopback ports, so pairs run side
by side (`-j N`) without sharing anything but the run's PKI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..core.attackplan import shown_bare
from ..core.model import Scenario, Step
from ..core.record import (
    AttackEntry,
    PairRecord,
    ReportCheck,
    RunRecord,
    SenderReport,
    StepRecord,
)
from ..core.selection import START, ClaimPlan, claim_plan
from ..core.verdict import Judgement, combine, judge_report, judge_step, outcome, with_report
from ..errors import LabError
from ..senders.base import Message, Sender, SendReport
from ..senders.registry import label, make_sender
from .lab import Lab, Reports
from .pki import PKI
from .topology import LOOPBACK, Topology

# States after which the sender will not deliver this message any more: the wait ends there.
FINAL_STATES = frozenset({"delivered", "deferred", "bounced"})
# Grace for a sender that ignores its deadline before the lab gives up on it.
DEADLINE_GRACE_S = 2.0
# How long a sender may take to send its TLS reports at the end of a step (RFC 8460 §4.1's
# daily schedule, squeezed into the step).
FLUSH_TIMEOUT_S = 10.0


def pair_record(scenario: Scenario, sender: str, judgement: Judgement,
                steps: Sequence[StepRecord] = (), duration_s: float = 0.0) -> PairRecord:
    """The record of one (scenario, sender) pair."""
    return PairRecord(scenario.id, sender, judgement.verdict, judgement.reason, scenario.title,
                      tuple(scenario.rfc), tuple(scenario.tags), scenario.path,
                      round(duration_s, 3), tuple(steps))


def run_record(results: Sequence[PairRecord], duration_s: float = 0.0) -> RunRecord:
    """The record of a whole run, stamped with this lab's version."""
    return RunRecord(tuple(results), round(duration_s, 3), lab_version=__version__)


def attack_json(step: Step) -> tuple[AttackEntry, ...]:
    """A step's attacks as the run record shows them: a bare name, or a table when it has
    hosts or options (the scenario's own spelling)."""
    out: list[AttackEntry] = []
    for a in step.attack:
        if shown_bare(a):
            out.append(AttackEntry(a.kind))
        else:
            out.append(AttackEntry(a.kind, a.hosts, a.cert, a.how, table=True))
    return tuple(out)


async def _send(sender: Sender, message: Message, step: Step, deadline: float) -> SendReport:
    try:
        return await asyncio.wait_for(sender.send(message, deadline),
                                      timeout=step.deadline_s + DEADLINE_GRACE_S)
    except TimeoutError:
        return SendReport("unknown", f"the sender did not finish within {step.deadline_s:g} s")


async def run_pair(scenario: Scenario, sender_spec: str, pki: PKI, *,
                   capture: bool = False, topology: Topology = LOOPBACK) -> PairRecord:
    """One scenario against one sender (a name, module:Class or a profile file), every step in
    order, sharing the sender's state. `capture`: keep the bytes that crossed the attacker in
    the record (for the pcap export)."""
    started = time.monotonic()
    sender_name = label(sender_spec)  # the matrix column: a profile's or a class's own name
    sender = make_sender(sender_spec)
    missing = scenario.needs() - sender.capabilities
    if missing:
        why = f"sender lacks {', '.join(sorted(missing))}"
        return pair_record(scenario, sender_name, Judgement("SKIP", why))
    judgements: list[Judgement] = []
    steps: list[StepRecord] = []
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
    return pair_record(scenario, sender_name, worst, steps, time.monotonic() - started)


async def _run_step(lab: Lab, sender: Sender, step: Step) -> tuple[Judgement, StepRecord]:
    if step.after_s:
        advance = getattr(sender, "advance_clock", None)
        if advance is not None:
            await advance(step.after_s)
    await lab.prepare(step)
    message = Message.make(step.world.message.to, step.world.message.headers)
    deadline = time.monotonic() + step.deadline_s  # one budget for the step: sending, waiting
    report = await _send(sender, message, step, deadline)
    if report.state not in FINAL_STATES:
        # The sender cannot say (a real MTA still retrying): wait on the evidence instead, until
        # the step's deadline, not a second one after it (not-delivered: not stored by then).
        await lab.wait_for(message.token, deadline)
    seen = lab.collect(step, message, report)
    check, flush, reports = await _tls_reports(lab, sender, step)
    evidence = seen.evidence
    judgement = with_report(judge_step(step.expect, step.tolerate, evidence, step.because), check)
    traffic = seen.traffic
    record = StepRecord(
        attack=attack_json(step), expect=step.expect, outcome=outcome(evidence),
        verdict=judgement.verdict, reason=judgement.reason,
        attacker_saw_mail_from=evidence.attacker_saw_mail_from,
        attacker_saw_body=evidence.attacker_saw_body, token=message.token,
        sender_report=SenderReport.from_json(report.as_json()),
        received=seen.received, other_mail=seen.other_mail, dns_queries=traffic.dns_queries,
        policy_fetches=traffic.policy_fetches, connections=traffic.connections,
        transcript=traffic.transcript, **flush,
        report_check=None if check is None or reports is None
        else ReportCheck(check.verdict, check.reason),
        tlsrpt_reports=None if reports is None else reports.tlsrpt_reports,
        report_connections=None if reports is None else reports.report_connections,
        report_transcript=None if reports is None else reports.report_transcript,
        report_dns_queries=None if reports is None else reports.report_dns_queries,
        tolerate=tuple(step.tolerate), because=step.because or "", dane=seen.dane)
    return judgement, record


async def _tls_reports(lab: Lab, sender: Sender, step: Step
                       ) -> tuple[Judgement | None, dict[str, Any], Reports | None]:
    """Let the sender flush its TLS reports, collect what arrived and judge the step's `report`
    expectation: (the check, `report_flush` if the sender has one, the reports or None when
    collecting them failed). Runs after `lab.collect()`: a report mailed in the clear through
    the attacker (R-03 demands it) is not the probe message's envelope crossing it (A-01)."""
    flush: dict[str, Any] = {}
    flush_reports = getattr(sender, "flush_reports", None)
    if flush_reports is not None:
        try:
            sent = await asyncio.wait_for(flush_reports(), FLUSH_TIMEOUT_S)
            if sent is not None:
                flush["report_flush"] = sent  # the sender's own account of what it sent
        except TimeoutError:
            flush["report_flush"] = f"flush_reports() did not finish within {FLUSH_TIMEOUT_S:g} s"
    try:
        reports = lab.collect_reports(step)
    except LabError as exc:
        return Judgement("ERROR", f"lab error: {exc}"), flush, None
    check = judge_report(step.report, reports.seen, "tls-rpt" in sender.capabilities)
    return check, flush, reports


ProgressFn = Callable[[PairRecord], None]


def _claims_of(plan: ClaimPlan) -> Callable[[int | None], int | None]:
    """The claims of a run alone in its process: the plan's state in memory."""
    state = START

    def take(finished: int | None) -> int | None:
        nonlocal state
        pair, state = plan.pick(state, finished)
        return pair

    return take


async def run_all(scenarios: Sequence[Scenario], senders: Sequence[str], *, jobs: int = 1,
                  progress: ProgressFn | None = None, capture: bool = False,
                  topology: Topology = LOOPBACK,
                  claim: Callable[[int | None], int | None] | None = None,
                  pki: PKI | None = None) -> RunRecord:
    """Every scenario against every sender, at most `jobs` pairs at once, results in order.
    The isolated topology has fixed addresses and ports: one pair at a time. `claim`: run the
    pairs it hands out (indices in catalogue order; told which pair the slot finished) until
    it gives None, as one of several workers sharing the run; the record then holds those
    pairs only. Alone, the run claims its pairs by the same plan (`selection.claim_plan`).
    `pki`: the labs' PKI, the caller's to close; by default one of the run's own."""
    started = time.monotonic()
    pairs = [(s, name) for s in scenarios for name in senders]
    results: list[PairRecord | None] = [None] * len(pairs)
    width = 1 if topology.isolated else max(1, jobs)
    if claim is None:
        claim = _claims_of(claim_plan(scenarios, senders, width))
    own = pki is None
    pki = pki or PKI()
    try:
        async def claiming(take: Callable[[int | None], int | None]) -> None:
            done: int | None = None
            while (i := take(done)) is not None:
                scenario, name = pairs[i]
                result = await run_pair(scenario, name, pki, capture=capture, topology=topology)
                results[i] = result
                if progress is not None:
                    progress(result)
                done = i

        async with asyncio.TaskGroup() as tg:
            for _ in range(width):
                tg.create_task(claiming(claim))
    finally:
        if own:
            pki.close()
    done = [r for r in results if r is not None]
    return run_record(done, time.monotonic() - started)
