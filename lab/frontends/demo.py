"""`downgrade-lab demo`: the classroom walkthrough (DESIGN §7), five acts on real lab runs.

Every fact the story tells is read from the run records of real pairs run here and now (the
transcript, what the receiver stored, what the attacker read, the sender's own report), so the
demo cannot drift from what the lab does. Act 1: the vulnerable `opportunistic` sender on an
honest path. Act 2: the attacker strips STARTTLS and reads the mail. Act 3: the domain publishes
an enforce policy and the MTA-STS sender keeps the mail. Act 4: the testing-mode twin delivers.
Act 5: the other defence, DANE (RFC 7672): the MX publishes a DNSSEC-signed TLSA record, the
attacker strips STARTTLS, and the DANE sender refuses (docs/dane.md).
This module builds the story; lab/frontends/demo_view.py draws it (terminal, plain text, HTML).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from msgspec import Struct, field

from ..core.record import PairRecord, StepRecord
from ..core.recordparts import Connection, TlsReport, TranscriptEntry
from ..core.scenario import scenario_from_text
from ..harness.pki import PKI
from ..harness.runner import run_pair

_HONEST = """
title = "Act 1: an honest path"
[[step]]
expect = "delivered-tls"
"""
_STRIP = """
title = "Act 2: the attacker strips STARTTLS"
[[step]]
attack = ["strip-starttls"]
expect = "delivered"
"""
# Acts 3 and 4: an honest first delivery fills the sender's policy cache, then the attack.
_POLICY = """
title = "Act {n}: {mode} policy, STARTTLS stripped"
[policy]
mode = "{mode}"
[[step]]
expect = "delivered-tls"
[[step]]
attack = ["strip-starttls"]
expect = "{expect}"
"""
# Act 5: DANE. The zone is signed, the MX host publishes 3 1 1 for its own key.
_DANE = """
title = "Act 5: DANE, STARTTLS stripped"
[dane]
tlsa = [{usage = 3, selector = 1, mtype = 1, cert = "genuine"}]
[[step]]
expect = "delivered-tls"
[[step]]
attack = ["strip-starttls"]
expect = "not-delivered"
"""


class ActSpec(Struct, frozen=True):
    key: str
    title: str
    toml: str
    sender: str | None  # None: the sender chosen on the command line (default `reference`)


ACTS: tuple[ActSpec, ...] = (
    ActSpec("honest", "An honest path", _HONEST, "opportunistic"),
    ActSpec("strip", "The attacker strips STARTTLS", _STRIP, "opportunistic"),
    ActSpec("enforce", "The domain publishes an enforce policy",
            _POLICY.format(n=3, mode="enforce", expect="not-delivered"), None),
    ActSpec("testing", "The testing-mode twin",
            _POLICY.format(n=4, mode="testing", expect="delivered"), None),
    ActSpec("dane", "DANE: a signed TLSA record instead of a policy", _DANE, None),
)


# The story, as the views draw it. Invariant: every string here comes from a run record or
# is fixed narration; nothing is guessed.
class Line(Struct, frozen=True):
    """One line of the dialogue: what the receiver side saw and what the sender side saw.
    `change`: same | deleted (the sender never heard it) | added | changed | dropped (the
    receiver never got it) | forged (the attacker answered itself) | tls (a band)."""

    arrow: str  # "<-" reply to the sender, "->" command to the receiver, "" a band
    receiver: str
    sender: str
    change: str = "same"


class Fact(Struct, frozen=True):
    label: str
    value: str
    tone: str = "plain"  # plain | good | bad


class Act(Struct):
    number: int
    key: str
    title: str
    sender: str
    setup: str
    dialogue: list[Line] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    stolen: str | None = None  # what the attacker read, when it read the message
    secret: str = ""  # the line of the stolen text to highlight
    moral: str = ""
    question: str = ""


def pick(name: str | None) -> list[ActSpec]:
    """The acts to show: all, or the one named by key or number ("strip", "2")."""
    if not name:
        return list(ACTS)
    for i, spec in enumerate(ACTS, 1):
        if name in (spec.key, str(i)):
            return [spec]
    known = ", ".join(f"{i} {s.key}" for i, s in enumerate(ACTS, 1))
    raise ValueError(f"no act {name!r} (acts: {known})")


async def run_acts(specs: Sequence[ActSpec], sender: str) -> list[PairRecord]:
    """Run every act's scenario against its sender; the run records' results, in order."""
    pki = PKI()
    try:
        results = []
        for spec in specs:
            scenario = scenario_from_text(spec.toml, file=f"<demo:{spec.key}>",
                                          scenario_id=f"demo/{spec.key}")
            result = await run_pair(scenario, spec.sender or sender, pki)
            results.append(result)
        return results
    finally:
        pki.close()


def build(specs: Sequence[ActSpec], results: Sequence[PairRecord]) -> list[Act]:
    builders = {"honest": _act_honest, "strip": _act_strip, "enforce": _act_policy,
                "testing": _act_policy, "dane": _act_dane}
    acts = []
    for spec, result in zip(specs, results, strict=True):
        number = ACTS.index(spec) + 1
        act = Act(number, spec.key, spec.title, result.sender, setup="")
        if result.verdict == "ERROR" or not result.steps:
            act.setup = f"The lab could not run this act: {result.reason}"
        else:
            builders[spec.key](act, result)
        acts.append(act)
    return acts


def _act_honest(act: Act, result: PairRecord) -> None:
    step = result.steps[-1]
    act.setup = (f"alice@sender.test mails a confidential message to bob@example.test. The sender "
                 f"is `{act.sender}`: it uses STARTTLS when the receiver offers it and checks no "
                 "certificate, as most MTAs have done for decades. An attacker sits on the path "
                 "between them. In this act it only watches.")
    act.dialogue = dialogue(step.transcript)
    act.facts = [_outcome(step), *_tls_facts(step), _read_fact(step)]
    act.moral = "STARTTLS protected the message: because the attacker let it."
    act.question = "The attacker saw two lines before the encryption began. Which one could it delete?"


def _act_strip(act: Act, result: PairRecord) -> None:
    step = result.steps[-1]
    act.setup = ("Same sender, same domain. Now the attacker deletes one line from the receiver's "
                 "EHLO reply: 250-STARTTLS. The sender never learns that the receiver offered "
                 "encryption.")
    act.dialogue = dialogue(step.transcript)
    report = step.sender_report
    act.facts = [_outcome(step), Fact("the sender says", f"{report.state}: {report.detail}"),
                 _read_fact(step)]
    act.stolen = attacker_read(step) if step.attacker_saw_body else None
    act.secret = "the secret token is"
    act.moral = ("Nothing failed: no error, no bounce, the sender reports success. STARTTLS is "
                 "opportunistic, and the attacker decides the opportunity.")
    act.question = "How could the sender have known that the receiver supports TLS?"


def _act_policy(act: Act, result: PairRecord) -> None:
    warm, step = result.steps[0], result.steps[-1]
    mode = "testing" if act.key == "testing" else "enforce"
    txt = next((a.split(" TXT ", 1)[1] for q in warm.dns_queries
                if q.qname.startswith("_mta-sts.") for a in q.answers if " TXT " in a),
               "(none seen)")
    fetched = [f"{f.status} https://{f.host}{f.path}" for f in warm.policy_fetches]
    policy: Mapping[str, Any] = warm.sender_report.extra.get("policy") or {}
    act.setup = (f"example.test now publishes an MTA-STS policy in mode {mode}: a DNS TXT record "
                 "at _mta-sts.example.test and the policy itself over HTTPS, at "
                 "https://mta-sts.example.test/.well-known/mta-sts.txt. The sender is "
                 f"`{act.sender}`. A first, honest delivery lets it learn the policy; then the "
                 "attacker strips STARTTLS again.")
    act.facts = [Fact("DNS TXT _mta-sts.example.test", txt),
                 Fact("policy fetched", ", ".join(fetched) or "not fetched by this sender")]
    if policy.get("mode"):
        act.facts.append(Fact("policy the sender holds", f"mode: {policy['mode']}, mx: "
                              f"{', '.join(policy.get('mx') or [])}, max_age: {policy.get('max_age')}"))
    act.facts.append(Fact("first delivery (honest)", _outcome(warm).value))
    act.dialogue = dialogue(step.transcript)
    report = step.sender_report
    act.facts += [_outcome(step), Fact("the sender says", f"{report.state}: {report.detail}"),
                  Fact("attacker saw MAIL FROM", "yes" if step.attacker_saw_mail_from else "no",
                       "bad" if step.attacker_saw_mail_from else "good"),
                  _read_fact(step)]
    if step.attacker_saw_body:
        act.stolen, act.secret = attacker_read(step), "the secret token is"
    if mode == "enforce":
        _enforce_story(act, step)
    else:
        _testing_story(act, step)


def _enforce_story(act: Act, step: StepRecord) -> None:
    if step.outcome == "not-delivered":
        act.moral = ("The sender refused to deliver without validated TLS and kept the mail in its "
                     "queue (deferred: it will retry). The attacker got the greeting and EHLO, "
                     "never the envelope or the message.")
    else:
        act.moral = (f"`{act.sender}` ignored the policy: the attacker read the mail again. "
                     "Publishing a policy protects only mail from senders that honour it.")
    act.question = ("The attacker cannot make the mail leak. What can it still do to Bob's mail? "
                    "(Hint: look at the sender's state.)")


def _testing_story(act: Act, step: StepRecord) -> None:
    reports = [f"{r.channel}: {', '.join(_result_types(r)) or 'no failures'}"
               for r in step.tlsrpt_reports or ()]
    act.facts.append(Fact("TLS reports (RFC 8460) filed", "; ".join(reports) or "none",
                          "good" if reports else "plain"))
    act.moral = ("In testing mode a sender that cannot validate the MX delivers anyway, and reports "
                 "the failure (RFC 8461 §5, TLS-RPT). Testing lets a domain learn from the reports "
                 "what enforce would break before it enforces; it does not protect this message.")
    act.question = "Why would a domain publish a policy that does not protect its mail?"


def _answers(step: StepRecord, qtype: str, prefix: str = "") -> list[str]:
    return [a for q in step.dns_queries if q.qtype == qtype
            and q.qname.lower().startswith(prefix) for a in q.answers]


def _act_dane(act: Act, result: PairRecord) -> None:
    warm, step = result.steps[0], result.steps[-1]
    tlsa = [a for a in _answers(warm, "TLSA", "_25._tcp.") if " TLSA " in a]
    sigs = [a for a in _answers(warm, "TLSA", "_25._tcp.") if " RRSIG " in a]
    chain = sorted({f"{q.qtype} {q.qname}" for q in warm.dns_queries
                    if q.qtype in ("DS", "DNSKEY")})
    act.setup = ("No MTA-STS this time. example.test signs its DNS (DNSSEC: the lab's root test. "
                 "vouches for it with a DS record) and publishes a TLSA record at "
                 "_25._tcp.mx1.example.test: a SHA-256 of the MX host's public key. The sender "
                 f"is `{act.sender}`. A first, honest delivery; then the attacker strips STARTTLS.")
    act.facts = [Fact("TLSA the sender should match", tlsa[0].split(" TLSA ", 1)[1] if tlsa
                      else "(not looked up by this sender)"),
                 Fact("its signature (RRSIG)", sigs[0].split(" RRSIG ", 1)[1][:72] + "..."
                      if sigs else "(none asked for: no DO bit)"),
                 Fact("chain of trust checked", ", ".join(chain) or "none"),
                 Fact("first delivery (honest)", _outcome(warm).value)]
    act.facts += _tls_facts(warm)
    for cert in warm.dane.certificates if warm.dane else ():  # the run record's DNSSEC evidence
        act.facts.append(Fact("the certificate it was shown",
                              f"SPKI SHA-256 {cert.spki_sha256[:16]}…: {cert.why}",
                              "good" if cert.matches else "bad"))
    act.dialogue = dialogue(step.transcript)
    report = step.sender_report
    act.facts += [_outcome(step),
                  Fact("the sender says", f"{report.state}: {report.detail}"),
                  _read_fact(step)]
    if step.attacker_saw_body:
        act.stolen, act.secret = attacker_read(step), "the secret token is"
        act.moral = (f"`{act.sender}` does not do DANE: the signed TLSA record meant nothing to it, "
                     "and the attacker read the mail.")
    else:
        act.moral = ("A secure TLSA record makes TLS mandatory (RFC 7672 §2.2): no STARTTLS, no "
                     "mail. The attacker can strip STARTTLS but cannot forge the signed record "
                     "that says it must be there, nor sign a denial that it exists.")
    act.question = ("The attacker also answers DNS. Why can it not simply delete the TLSA record? "
                    "(Hint: try `dane/drop-tlsa`.)")


def _result_types(report: TlsReport) -> list[str]:
    body = report.report or {}
    return sorted({d.get("result-type", "?") for p in body.get("policies") or []
                   for d in p.get("failure-details") or []})


OUTCOME_WORDS = {"delivered-tls": ("delivered over TLS", "good"),
                 "delivered-plaintext": ("delivered in plaintext, through the attacker", "bad"),
                 "not-delivered": ("not delivered", "plain")}


def _outcome(step: StepRecord) -> Fact:
    words, tone = OUTCOME_WORDS.get(step.outcome, (step.outcome, "plain"))
    return Fact("outcome", words, tone)


def _tls_facts(step: StepRecord) -> list[Fact]:
    return [Fact("TLS at the receiver", f"{m.tls_version}, cipher {m.cipher}, SNI {m.sni}", "good")
            for m in step.received if m.tls]


def _read_fact(step: StepRecord) -> Fact:
    conn = _connection(step)
    text = attacker_read(step)
    lines = [ln for ln in text.split("\r\n") if ln]
    shown = " / ".join(lines[:4]) + (f" / ... ({len(lines)} lines)" if len(lines) > 4 else "")
    encrypted = conn.passthrough_to_receiver if conn else 0
    if encrypted:
        shown += f"; then {encrypted} encrypted bytes it could not read"
    return Fact("the attacker read", shown or "nothing", "bad" if step.attacker_saw_body else "good")


def _main_connection(transcript: Sequence[TranscriptEntry]) -> int | None:
    """The step's delivery connection: the last one the receiver greeted."""
    greeted = [e.connection for e in transcript
               if e.kind == "reply" and e.said.startswith("220 ") and e.origin == "receiver"]
    return greeted[-1] if greeted else None


def _connection(step: StepRecord) -> Connection | None:
    index = _main_connection(step.transcript)
    conns = step.connections
    return conns[index] if index is not None and index < len(conns) else None


def attacker_read(step: StepRecord) -> str:
    """What the sender sent in the clear on the delivery connection, as the attacker read it
    (the proxy's ConnectionRecord.client_plaintext, quoted in the run record)."""
    conn = _connection(step)
    return conn.attacker_read if conn else ""


def dialogue(transcript: Sequence[TranscriptEntry], index: int | None = None) -> list[Line]:
    """Connection `index` of a transcript (default: the delivery connection) line by line,
    receiver side and sender side."""
    if index is None:
        index = _main_connection(transcript)
    lines: list[Line] = []
    for e in transcript:
        if e.connection != index:
            continue
        if e.kind == "event":
            if "tls" in e.said:
                lines.append(Line("", "TLS from here on", "TLS from here on", "tls"))
            continue
        lines += _entry_lines(e)
    return lines


def _entry_lines(e: TranscriptEntry) -> list[Line]:
    to_sender = e.direction == "receiver->sender"
    arrow = "<-" if to_sender else "->"
    said, heard = e.said, e.heard
    if e.origin == "attacker":  # a reply the receiver never gave
        return [Line(arrow, "", ln, "forged") for ln in said.splitlines()]
    # The receiver's side shows a reply as said and a command as it arrived; the sender's side
    # the reverse. A line on one side only was taken out or put in by the attacker.
    recv, send = (said, heard) if to_sender else (heard, said)
    a = [] if recv is None else str(recv).splitlines()
    b = [] if send is None else str(send).splitlines()
    only_recv, only_send = ("deleted", "added") if to_sender else ("added", "dropped")
    out: list[Line] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += [Line(arrow, x, x) for x in a[i1:i2]]
        elif op == "replace":
            out += [Line(arrow, x, y, "changed") for x, y in zip(a[i1:i2], b[j1:j2], strict=False)]
            out += [Line(arrow, x, "", only_recv) for x in a[i1 + (j2 - j1):i2]]
            out += [Line(arrow, "", y, only_send) for y in b[j1 + (i2 - i1):j2]]
        else:
            out += [Line(arrow, x, "", only_recv) for x in a[i1:i2]]
            out += [Line(arrow, "", y, only_send) for y in b[j1:j2]]
    return out
