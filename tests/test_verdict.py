"""Evidence -> outcome -> verdict, one line per case."""

from __future__ import annotations

import pytest

from downgrade_lab.core.verdict import (
    Evidence,
    Judgement,
    Stored,
    combine,
    exit_code,
    judge_step,
    outcome,
    summary,
)

TLS = (Stored(tls=True),)
CLEAR = (Stored(tls=False),)


@pytest.mark.parametrize(("evidence", "expected"), [
    (Evidence(), "not-delivered"),
    (Evidence(stored=TLS), "delivered-tls"),
    (Evidence(stored=CLEAR), "delivered-plaintext"),
    # TLS to the genuine receiver, but the attacker read the body (it terminated TLS itself)
    (Evidence(stored=TLS, attacker_saw_body=True), "delivered-plaintext"),
    # two copies, one in the clear: the weaker counts
    (Evidence(stored=TLS + CLEAR), "delivered-plaintext"),
    # the attacker read it but the receiver never stored it: still not delivered
    (Evidence(attacker_saw_body=True), "not-delivered"),
], ids=["nothing", "tls", "clear", "tls-but-read", "two-copies", "read-not-stored"])
def test_outcome(evidence: Evidence, expected: str) -> None:
    assert outcome(evidence) == expected


@pytest.mark.parametrize(("expect", "tolerate", "evidence", "verdict", "words"), [
    ("delivered-tls", (), Evidence(stored=TLS), "PASS", ""),
    ("delivered-tls", (), Evidence(stored=CLEAR), "FAIL", "expected delivered over TLS"),
    ("delivered", (), Evidence(stored=CLEAR), "PASS", ""),
    ("delivered", (), Evidence(stored=TLS), "PASS", ""),
    ("delivered", (), Evidence(), "FAIL", "not delivered"),
    ("delivered-plaintext", (), Evidence(stored=CLEAR), "PASS", ""),
    ("delivered-plaintext", (), Evidence(stored=TLS), "FAIL", "over TLS"),
    ("not-delivered", (), Evidence(sender_state="deferred"), "PASS", ""),
    ("not-delivered", (), Evidence(stored=CLEAR, attacker_saw_body=True), "FAIL", "attacker read it"),
    ("not-delivered", (), Evidence(sender_state="bounced"), "FAIL", "A-02"),
    ("not-delivered", (), Evidence(attacker_saw_mail_from=True), "FAIL", "A-01"),
    ("not-delivered", (), Evidence(attacker_saw_body=True, attacker_saw_mail_from=True), "FAIL", "read the message body"),
    ("delivered-tls", (), Evidence(stored=TLS, attacker_saw_mail_from=True), "FAIL", "A-01"),
    ("delivered", (), Evidence(stored=CLEAR, attacker_saw_mail_from=True), "PASS", ""),
    ("not-delivered", ("delivered-plaintext",), Evidence(stored=CLEAR), "WEAK", "tolerated: A-07"),
    ("not-delivered", ("delivered-plaintext",), Evidence(stored=TLS), "FAIL", "expected not delivered"),
    ("delivered-tls", (), Evidence(stored=TLS, lab_error="dns died"), "ERROR", "dns died"),
])
def test_judge_step(expect: str, tolerate: tuple[str, ...], evidence: Evidence, verdict: str,
                    words: str) -> None:
    j = judge_step(expect, tolerate, evidence, because="A-07")
    assert j.verdict == verdict
    assert words in j.reason
    assert (j.reason == "") == (verdict == "PASS")


@pytest.mark.parametrize(("verdicts", "worst"), [
    ([], "PASS"), (["PASS", "PASS"], "PASS"), (["PASS", "WEAK"], "WEAK"), (["WEAK", "FAIL"], "FAIL"),
    (["FAIL", "ERROR"], "ERROR"), (["SKIP", "PASS"], "SKIP"), (["FAIL", "SKIP"], "FAIL"),
])
def test_combine_takes_the_worst(verdicts: list[str], worst: str) -> None:
    assert combine(Judgement(v, v.lower()) for v in verdicts).verdict == worst


def test_combine_keeps_the_first_worst_reason() -> None:
    j = combine([Judgement("FAIL", "first"), Judgement("FAIL", "second")])
    assert j.reason == "first"


@pytest.mark.parametrize(("verdicts", "code"), [
    (["PASS", "WEAK", "SKIP"], 0), (["PASS", "FAIL"], 1), (["ERROR"], 1), ([], 0),
])
def test_exit_code(verdicts: list[str], code: int) -> None:
    assert exit_code(summary(verdicts)) == code
