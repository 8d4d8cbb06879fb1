"""Observations -> outcome -> verdict (DESIGN §4). Pure: no I/O, no clocks.

The outcome is read from evidence, never from what the sender says about itself: the genuine
receiver's store (with the TLS facts of the session that carried the message) and what the
attacker read. The sender's own report only refines a verdict (a bounce where a deferral is
due).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VERDICTS = ("PASS", "WEAK", "FAIL", "SKIP", "ERROR")
# Severity for combining step verdicts into a scenario verdict: the worst wins.
# Invariant: ERROR (the lab failed) outranks everything, so a lab fault never reads as a FAIL.
_SEVERITY = {"PASS": 0, "WEAK": 1, "SKIP": 2, "FAIL": 3, "ERROR": 4}

# Expectations that demand the attacker learn nothing: A-01 says no MAIL FROM and no body may
# reach a host that failed validation under enforce.
_CONFIDENTIAL = frozenset({"delivered-tls", "not-delivered"})


@dataclass(frozen=True)
class Stored:
    """One copy of the probe message in the genuine receiver's store."""

    tls: bool  # inside a TLS session the genuine receiver terminated itself


@dataclass(frozen=True)
class Evidence:
    stored: tuple[Stored, ...] = ()
    attacker_saw_body: bool = False  # the token crossed the attacker in the clear (or in
    # TLS the attacker terminated)
    attacker_saw_mail_from: bool = False
    sender_state: str | None = None  # delivered | deferred | bounced | unknown | None
    sender_detail: str = ""
    lab_error: str | None = None


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reason: str  # one line, "" for PASS


def outcome(evidence: Evidence) -> str:
    """delivered-tls | delivered-plaintext | not-delivered."""
    if not evidence.stored:
        return "not-delivered"
    if all(s.tls for s in evidence.stored) and not evidence.attacker_saw_body:
        return "delivered-tls"
    return "delivered-plaintext"


def meets(expect: str, observed: str) -> bool:
    if expect == "delivered":
        return observed.startswith("delivered")
    return expect == observed


_DESCRIBE = {
    "delivered-tls": "delivered over TLS",
    "delivered-plaintext": "delivered where the attacker read it",
    "not-delivered": "not delivered",
    "delivered": "delivered",
}


def judge_step(expect: str, tolerate: Sequence[str], evidence: Evidence,
               because: str = "") -> Judgement:
    if evidence.lab_error:
        return Judgement("ERROR", f"lab error: {evidence.lab_error}")
    observed = outcome(evidence)
    detail = f" ({evidence.sender_detail})" if evidence.sender_detail else ""
    if meets(expect, observed):
        if expect in _CONFIDENTIAL and evidence.attacker_saw_body:
            return Judgement("FAIL", "the attacker read the message body (A-01)" + detail)
        if expect in _CONFIDENTIAL and evidence.attacker_saw_mail_from:
            # RFC 8461 §5: the envelope must not cross a host that failed validation.
            return Judgement("FAIL", "MAIL FROM crossed the attacker in the clear (A-01)" + detail)
        if expect == "not-delivered" and evidence.sender_state == "bounced":
            # RFC 8461 §5: enforcement failures are temporary, never a bounce.
            return Judgement("FAIL", "bounced the message instead of deferring it (A-02)" + detail)
        return Judgement("PASS", "")
    if observed in tolerate:
        why = f": {because}" if because else ""
        return Judgement("WEAK", f"{_DESCRIBE[observed]}, tolerated{why}")
    return Judgement("FAIL", f"{_DESCRIBE[observed]}, expected {_DESCRIBE[expect]}{detail}")


def combine(judgements: Iterable[Judgement]) -> Judgement:
    """The scenario's verdict: the worst step's verdict with that step's reason."""
    worst = Judgement("PASS", "")
    for j in judgements:
        if _SEVERITY[j.verdict] > _SEVERITY[worst.verdict]:
            worst = j
    return worst


@dataclass(frozen=True)
class ReportSeen:
    """One TLS report (RFC 8460) the lab's collector received during a step, as judged."""

    channel: str  # https | mail
    problems: tuple[str, ...] = ()  # RFC 8460 §4.4 / §5 violations; () = a valid report
    covers_domain: bool = True  # it has a `policies` entry for the step's policy domain
    successes: int = 0  # for that domain
    failures: int = 0
    result_types: frozenset[str] = frozenset()


def _types(types: Iterable[str]) -> str:
    return ", ".join(sorted(types)) or "none"


def judge_report(expected: tuple[str, ...] | bool | None, reports: Sequence[ReportSeen],
                 capable: bool) -> Judgement | None:
    """The step's TLS-RPT check (R-02, R-04, R-05), None when the step states no expectation.

    `expected`: the result types every report must carry for the step's failures, exactly;
    `()`: successes only; False: no report may arrive (R-01: no usable record). A sender
    without the `tls-rpt` capability is SKIP, never FAIL. Every report that arrived counts, by
    mail and by HTTPS alike: each must be valid and say the same."""
    if expected is None:
        return None
    if not capable:
        return Judgement("SKIP", "sender lacks tls-rpt")
    if expected is False or expected is True:
        if reports:
            via = ", ".join(sorted({r.channel for r in reports}))
            return Judgement("FAIL", f"sent {len(reports)} report(s) ({via}) although the "
                             "domain has no usable TLS-RPT record (R-01)")
        return Judgement("PASS", "")
    want = frozenset(expected)
    if not reports:
        return Judgement("FAIL", f"no TLS report arrived (expected result types: {_types(want)})")
    for r in reports:
        if r.problems:
            more = f" (+{len(r.problems) - 1} more)" if len(r.problems) > 1 else ""
            return Judgement("FAIL", f"invalid report by {r.channel}: {r.problems[0]}{more}")
        if not r.covers_domain:
            return Judgement("FAIL", f"report by {r.channel} has no policies entry for the "
                             "recipient domain")
        if not want and (r.failures or r.result_types):
            return Judgement("FAIL", f"report by {r.channel} has {r.failures} failed session(s) "
                             f"({_types(r.result_types)}) where every session succeeded")
        if not want and not r.successes:
            return Judgement("FAIL", f"report by {r.channel} counts no successful session")
        if want and r.result_types != want:
            missing, extra = want - r.result_types, r.result_types - want
            why = [f"lacks {_types(missing)}"] if missing else []
            why += [f"has unexpected {_types(extra)}"] if extra else []
            return Judgement("FAIL", f"report by {r.channel} {' and '.join(why)}")
    return Judgement("PASS", "")


def with_report(delivery: Judgement, report: Judgement | None) -> Judgement:
    """The step's verdict: the delivery verdict, made FAIL by a failed report check (ERROR if
    the lab failed). A SKIP report check never changes it."""
    if report is None or report.verdict in ("PASS", "SKIP") or delivery.verdict == "ERROR":
        return delivery
    if report.verdict == "ERROR" or delivery.verdict != "FAIL":
        return Judgement(report.verdict, f"TLS-RPT: {report.reason}")
    return delivery


def summary(verdicts: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for v in verdicts:
        counts[v] += 1
    return counts


def exit_code(counts: dict[str, int]) -> int:
    """DESIGN §6: 0 every expectation met, 1 some failed (or the lab erred)."""
    return 1 if counts.get("FAIL", 0) or counts.get("ERROR", 0) else 0
