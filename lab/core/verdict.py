"""Observations -> outcome -> verdict (DESIGN §4). Pure: no I/O, no clocks.

The outcome is read from evidence, never from what the sender says about itself: the genuine
receiver's store (with the TLS facts of the session that carried the message) and what the
attacker read. The sender's own report only refines a verdict (a bounce where a deferral is
due).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from msgspec import Struct

VERDICTS = ("PASS", "WEAK", "FAIL", "SKIP", "ERROR")
# Severity for combining step verdicts into a scenario verdict: the worst wins.
# Invariant: ERROR (the lab failed) outranks everything, so a lab fault never reads as a FAIL.
_SEVERITY = {"PASS": 0, "WEAK": 1, "SKIP": 2, "FAIL": 3, "ERROR": 4}

# Expectations that demand the attacker learn nothing: A-01 says no MAIL FROM and no body may
# reach a host that failed validation under enforce.
_CONFIDENTIAL = frozenset({"delivered-tls", "not-delivered"})


class Stored(Struct, frozen=True):
    """One copy of the probe message in the genuine receiver's store."""

    tls: bool  # inside a TLS session the genuine receiver terminated itself


class Evidence(Struct, frozen=True):
    stored: tuple[Stored, ...] = ()
    attacker_saw_body: bool = False  # the token crossed the attacker in the clear (or in
    # TLS the attacker terminated)
    attacker_saw_mail_from: bool = False
    sender_state: str | None = None  # delivered | deferred | bounced | unknown | None
    sender_detail: str = ""
    lab_error: str | None = None


class Judgement(Struct, frozen=True):
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


class _Step(Struct, frozen=True):
    """The facts one step's delivery verdict is read from."""

    expect: str
    tolerate: Sequence[str]
    evidence: Evidence
    because: str
    observed: str

    @property
    def met(self) -> bool:
        return meets(self.expect, self.observed)

    @property
    def confidential(self) -> bool:
        return self.met and self.expect in _CONFIDENTIAL

    @property
    def detail(self) -> str:
        return f" ({self.evidence.sender_detail})" if self.evidence.sender_detail else ""


# The delivery rules of a step: (applies, verdict, reason), the first rule that applies decides.
# Invariants: a lab error is ERROR before anything else counts (the sender is not at fault); an
# expected outcome is PASS only if the attacker learnt nothing where the expectation demands
# it and a due deferral was no bounce; a missed expectation is WEAK only when the
# step tolerates the outcome, else FAIL; the last rule always applies.
_STEP_RULES: tuple[tuple[Callable[[_Step], bool], str, Callable[[_Step], str]], ...] = (
    (lambda s: bool(s.evidence.lab_error), "ERROR",
     lambda s: f"lab error: {s.evidence.lab_error}"),
    (lambda s: s.confidential and s.evidence.attacker_saw_body, "FAIL",
     lambda s: "the attacker read the message body (A-01)" + s.detail),
    # RFC 8461 §5: the envelope must not cross a host that failed validation.
    (lambda s: s.confidential and s.evidence.attacker_saw_mail_from, "FAIL",
     lambda s: "MAIL FROM crossed the attacker in the clear (A-01)" + s.detail),
    # RFC 8461 §5: enforcement failures are temporary, never a bounce.
    (lambda s: s.met and s.expect == "not-delivered" and s.evidence.sender_state == "bounced",
     "FAIL", lambda s: "bounced the message instead of deferring it (A-02)" + s.detail),
    (lambda s: s.met, "PASS", lambda s: ""),
    (lambda s: s.observed in s.tolerate, "WEAK",
     lambda s: f"{_DESCRIBE[s.observed]}, tolerated" + (f": {s.because}" if s.because else "")),
    (lambda s: True, "FAIL",
     lambda s: f"{_DESCRIBE[s.observed]}, expected {_DESCRIBE[s.expect]}{s.detail}"),
)


def judge_step(expect: str, tolerate: Sequence[str], evidence: Evidence,
               because: str = "") -> Judgement:
    """A step's delivery verdict: the first of `_STEP_RULES` that applies."""
    facts = _Step(expect, tolerate, evidence, because, outcome(evidence))
    return next(Judgement(verdict, reason(facts))
                for applies, verdict, reason in _STEP_RULES if applies(facts))


def combine(judgements: Iterable[Judgement]) -> Judgement:
    """The scenario's verdict: the worst step's verdict with that step's reason."""
    worst = Judgement("PASS", "")
    for j in judgements:
        if _SEVERITY[j.verdict] > _SEVERITY[worst.verdict]:
            worst = j
    return worst


class ReportSeen(Struct, frozen=True):
    """One TLS report (RFC 8460) the lab's collector received during a step, as judged."""

    channel: str  # https | mail
    problems: tuple[str, ...] = ()  # RFC 8460 §4.4 / §5 violations; () = a valid report
    covers_domain: bool = True  # it has a `policies` entry for the step's policy domain
    successes: int = 0  # for that domain
    failures: int = 0
    result_types: frozenset[str] = frozenset()


def _types(types: Iterable[str]) -> str:
    return ", ".join(sorted(types)) or "none"


def _more(r: ReportSeen) -> str:
    return f" (+{len(r.problems) - 1} more)" if len(r.problems) > 1 else ""


def _mismatch(r: ReportSeen, want: frozenset[str]) -> str:
    missing, extra = want - r.result_types, r.result_types - want
    why = [f"lacks {_types(missing)}"] if missing else []
    why += [f"has unexpected {_types(extra)}"] if extra else []
    return f"report by {r.channel} {' and '.join(why)}"


# What makes one report that arrived wrong, given the result types `want` the step expects
# (empty: successes only): (applies, reason of the FAIL), checked in order for every report.
# Invariants: a report is judged on its content only once it is valid and covers the
# recipient domain; with `want` empty it must count successes and no failure, otherwise it must
# carry exactly `want`. A report no rule applies to is a good one.
_REPORT_RULES: tuple[tuple[Callable[[ReportSeen, frozenset[str]], bool],
                           Callable[[ReportSeen, frozenset[str]], str]], ...] = (
    (lambda r, want: bool(r.problems),
     lambda r, want: f"invalid report by {r.channel}: {r.problems[0]}{_more(r)}"),
    (lambda r, want: not r.covers_domain,
     lambda r, want: f"report by {r.channel} has no policies entry for the recipient domain"),
    (lambda r, want: not want and bool(r.failures or r.result_types),
     lambda r, want: f"report by {r.channel} has {r.failures} failed session(s) "
                     f"({_types(r.result_types)}) where every session succeeded"),
    (lambda r, want: not want and not r.successes,
     lambda r, want: f"report by {r.channel} counts no successful session"),
    (lambda r, want: bool(want) and r.result_types != want, _mismatch),
)


class _Reports(Struct, frozen=True):
    """The facts a step's TLS-RPT check is read from (an expectation is stated)."""

    expected: tuple[str, ...] | Literal[False]
    reports: Sequence[ReportSeen]
    capable: bool

    @property
    def none_due(self) -> bool:
        return self.expected is False

    @property
    def want(self) -> frozenset[str]:
        return frozenset(self.expected or ())

    @property
    def channels(self) -> str:
        return ", ".join(sorted({r.channel for r in self.reports}))

    @property
    def fault(self) -> str | None:
        """Why the first wrong report is wrong (`_REPORT_RULES`), None if every one is right."""
        return next((reason(r, self.want) for r in self.reports
                     for applies, reason in _REPORT_RULES if applies(r, self.want)), None)


# The TLS-RPT check of a step that states an expectation: (applies, verdict, reason), the
# first rule that applies decides. Invariants: a sender without `tls-rpt` is SKIP before any
# report counts; with `report = false` any report is a FAIL and none is a PASS; with
# result types to report, no report is a FAIL and every report must pass `_REPORT_RULES`; the
# last rule always applies.
_CHECK_RULES: tuple[tuple[Callable[[_Reports], bool], str, Callable[[_Reports], str]], ...] = (
    (lambda c: not c.capable, "SKIP", lambda c: "sender lacks tls-rpt"),
    (lambda c: c.none_due and bool(c.reports), "FAIL",
     lambda c: f"sent {len(c.reports)} report(s) ({c.channels}) although the domain has no "
               "usable TLS-RPT record (R-01)"),
    (lambda c: c.none_due, "PASS", lambda c: ""),
    (lambda c: not c.reports, "FAIL",
     lambda c: f"no TLS report arrived (expected result types: {_types(c.want)})"),
    (lambda c: c.fault is not None, "FAIL", lambda c: c.fault or ""),
    (lambda c: True, "PASS", lambda c: ""),
)


def judge_report(expected: tuple[str, ...] | Literal[False] | None,
                 reports: Sequence[ReportSeen], capable: bool) -> Judgement | None:
    """The step's TLS-RPT check (R-02, R-04, R-05), None when the step states no expectation.

    `expected`: the result types every report must carry for the step's failures, exactly;
    `()`: successes only; False: no report may arrive (R-01: no usable record). A sender
    without the `tls-rpt` capability is SKIP, never FAIL. Every report that arrived counts, by
    mail and by HTTPS alike: each must be valid and say the same. The first of `_CHECK_RULES`
    that applies decides."""
    if expected is None:
        return None
    facts = _Reports(expected, reports, capable)
    return next(Judgement(verdict, reason(facts))
                for applies, verdict, reason in _CHECK_RULES if applies(facts))


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
