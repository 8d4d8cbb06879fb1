"""Decisions the services and the wiring take from the core (issue 11, item 5), one line per case,
a failure beside every success: the policy host (lab/core/policyserve.py), the DNS server's
answer-FORMERR-or-drop rule (lab/core/dnsserve.py), the attacks' wiring (lab/core/attackplan.py),
and the tables of the verdicts, the [policy] keys and the subcommands. No sockets."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Literal

import dnslib
import pytest
from msgspec.structs import fields, replace

from downgrade_lab.core import attackplan, dnsserve, model, policyserve, scenario, verdict
from downgrade_lab.core.attackplan import proxy_attacks, shown_bare, spoofs_mx, upstreams
from downgrade_lab.core.dnsserve import Served, serve
from downgrade_lab.core.dnszone import ATTACKER_MX, Zone, answer, build_zone, is_query
from downgrade_lab.core.model import ATTACKS, Attack, DnsSpec, PolicySpec, Scenario, Step, World
from downgrade_lab.core.policyserve import (
    WELL_KNOWN,
    certificate,
    fetch_mode,
    route,
    trickle_interval,
    trickles,
)
from downgrade_lab.core.verdict import Evidence, ReportSeen, Stored
from downgrade_lab.errors import LabError
from downgrade_lab.frontends import cli
from tests.purity import IO_MODULES, imported_roots, loaded_by_importing

MX1, MX2 = "mx1.example.test", "mx2.example.test"
POLICY = PolicySpec(mx=(MX1,))
DEFAULT = "mta-sts.example.test"


# ---- the policy host: block mode (block-policy-fetch) ------------------------------------------
@pytest.mark.parametrize(("attacks", "mode"), [
    pytest.param((), "serve", id="no attack: serve"),
    pytest.param((Attack("strip-starttls"),), "serve", id="another layer's attack: serve"),
    pytest.param((Attack("block-policy-fetch"),), "refused", id="no how: refused"),
    pytest.param((Attack("block-policy-fetch", how="reset"),), "reset", id="reset"),
    pytest.param((Attack("block-policy-fetch", how="timeout"),), "timeout", id="timeout"),
    pytest.param((Attack("block-policy-fetch", how="reset"), Attack("block-policy-fetch", how="timeout")), "timeout", id="the last block wins"),
])
def test_fetch_mode(attacks: tuple[Attack, ...], mode: str) -> None:
    assert fetch_mode(attacks) == mode


@pytest.mark.parametrize("how", [
    pytest.param("drop", id="unknown how"),
    pytest.param("serve", id="serve is no way of blocking"),
])
def test_fetch_mode_refuses_a_bad_how(how: str) -> None:
    with pytest.raises(LabError, match=f"block-policy-fetch how must be one of refused, reset, timeout, got '{how}'"):
        fetch_mode((Attack("block-policy-fetch", how=how),))


# ---- the policy host: which certificate answers a ClientHello (F-02, F-10) -------------------
@pytest.mark.parametrize(("server_name", "policy", "presented"), [
    pytest.param("mta-sts.example.test", POLICY, ("mta-sts.example.test", "valid"), id="the policy host's name"),
    pytest.param("MTA-STS.Example.Test.", POLICY, ("mta-sts.example.test", "valid"), id="case and root dot folded"),
    pytest.param("example.test", POLICY, ("example.test", "valid"), id="another name: its own certificate (F-02 fails)"),
    pytest.param(None, POLICY, (DEFAULT, "valid"), id="no SNI: the default identity"),
    pytest.param("", POLICY, (DEFAULT, "valid"), id="empty SNI: the default identity"),
    pytest.param("not a host!", POLICY, (DEFAULT, "valid"), id="not a host name: the default identity"),
    pytest.param("a" * 64 + ".test", POLICY, (DEFAULT, "valid"), id="a label over 63: the default identity"),
    pytest.param("mta-sts.example.test", replace(POLICY, cert="expired"), ("mta-sts.example.test", "expired"), id="the policy's variant"),
    pytest.param("mta-sts.example.test", None, ("mta-sts.example.test", "valid"), id="no policy: valid"),
])
def test_certificate(server_name: str | None, policy: PolicySpec | None, presented: tuple[str, str]) -> None:
    assert certificate(server_name, policy, DEFAULT) == presented


# ---- the policy host: the trickle rate (F-06) --------------------------------------------------
@pytest.mark.parametrize(("policy", "interval"), [
    pytest.param(None, 0.0, id="no policy: at once"),
    pytest.param(POLICY, 0.0, id="no trickle_s: at once"),
    pytest.param(replace(POLICY, trickle_s=10.0), 10.0 / len(POLICY.body()), id="trickle_s spread over the body"),
    pytest.param(replace(POLICY, raw="", trickle_s=3.0), 3.0, id="empty body: no division by zero"),
])
def test_trickle_interval(policy: PolicySpec | None, interval: float) -> None:
    assert trickle_interval(policy) == pytest.approx(interval)


BODY = policyserve.Reply(200, (), b"version: STSv1\r\n")


@pytest.mark.parametrize(("interval", "reply", "method", "slow"), [
    pytest.param(0.1, BODY, "GET", True, id="a GET's body trickles"),
    pytest.param(0.0, BODY, "GET", False, id="no interval: at once"),
    pytest.param(0.1, BODY, "HEAD", False, id="HEAD has no body to trickle"),
    pytest.param(0.1, replace(BODY, body=b""), "GET", False, id="empty body: at once"),
])
def test_trickles(interval: float, reply: policyserve.Reply, method: str, slow: bool) -> None:
    assert trickles(interval, reply, method) is slow


@pytest.mark.parametrize(("policy", "method", "path", "status"), [
    pytest.param(POLICY, "GET", WELL_KNOWN, 200, id="F-01 the well-known path"),
    pytest.param(POLICY, "GET", "/other", 404, id="another path"),
    pytest.param(None, "GET", WELL_KNOWN, 404, id="no policy"),
    pytest.param(POLICY, "POST", WELL_KNOWN, 405, id="POST"),
    pytest.param(replace(POLICY, redirect="/moved.txt"), "GET", WELL_KNOWN, 301, id="F-03 redirect"),
    pytest.param(replace(POLICY, redirect="/moved.txt"), "GET", "/moved.txt", 200, id="F-03 where it leads"),
])
def test_route(policy: PolicySpec | None, method: str, path: str, status: int) -> None:
    assert route(policy, method, path).status == status


# ---- the DNS server: answer, FORMERR or drop ---------------------------------------------------
WORLD = World("example.test", DnsSpec(mx=(MX1,)), POLICY, model.ReceiverSpec(), model.MessageSpec())
ZONE = build_zone(WORLD, {MX1: "127.0.0.1", DEFAULT: "127.0.0.1"})
TIMEOUT_ZONE = build_zone(replace(WORLD, dns=replace(WORLD.dns, fault=((MX1, "timeout"),))), {MX1: "127.0.0.1"})
QUERY = dnslib.DNSRecord.question(MX1, "A").pack()
RESPONSE = dnslib.DNSRecord.question(MX1, "A").reply().pack()
HEADER = b"\x12\x34\x00\x00\x00\x01" + b"\x00" * 6  # a sound query header, one question announced
BIG = dnslib.DNSRecord.question("_mta-sts.example.test", "TXT").pack()
BIG_ZONE = build_zone(replace(WORLD, dns=replace(WORLD.dns, sts_txt=tuple((f"v=STSv1; id={i:040}",) for i in range(20)))), {})


@pytest.mark.parametrize(("zone", "data", "rcode", "answered", "note"), [
    pytest.param(ZONE, QUERY, "NOERROR", True, "", id="a query is answered"),
    pytest.param(ZONE, RESPONSE, "DROPPED", False, "a response, not a query", id="a response is dropped"),
    pytest.param(ZONE, HEADER + b"\x07trunc", "FORMERR", True, "malformed packet (18 bytes)", id="broken after a sound header: FORMERR"),
    pytest.param(ZONE, b"\x12\x34\x80\x00" + HEADER[4:] + b"\x07trunc", "DROPPED", False, "malformed packet", id="broken response: dropped"),
    pytest.param(ZONE, b"\x01", "DROPPED", False, "malformed packet (1 bytes)", id="no header: dropped"),
    pytest.param(TIMEOUT_ZONE, QUERY, "TIMEOUT", False, "", id="a timeout fault: silence"),
    pytest.param(BIG_ZONE, BIG, "NOERROR", True, "truncated (TC): too big for UDP", id="too big for UDP: truncated"),
])
def test_serve(zone: Zone, data: bytes, rcode: str, answered: bool, note: str) -> None:
    served = serve(zone, data, "udp")
    assert served.rcode == rcode and note in served.note
    assert (served.out is not None) is answered
    if served.out is not None:
        assert served.out[:2] == data[:2] and served.out[2] & 0x80  # a response to the id asked


def test_serve_records_the_question_and_the_answers() -> None:
    assert serve(ZONE, QUERY, "tcp") == Served(
        serve(ZONE, QUERY, "tcp").out, "NOERROR", f"{MX1}.", "A",
        answers=(f"{MX1}. 0 IN A 127.0.0.1",))


@pytest.mark.parametrize(("packet", "query"), [
    pytest.param(dnslib.DNSRecord.question(MX1, "A"), True, id="a query"),
    pytest.param(dnslib.DNSRecord.question(MX1, "A").reply(), False, id="a response"),
])
def test_one_rule_for_what_is_never_answered(packet: dnslib.DNSRecord, query: bool) -> None:
    assert is_query(packet.header) is query
    assert (answer(ZONE, packet) is not None) is query  # the zone's answer() obeys the same rule
    assert (serve(ZONE, packet.pack(), "udp").rcode != "DROPPED") is query


def _asked(qid: int, qtype: str = "A") -> bytes:
    q = dnslib.DNSRecord.question(MX1, qtype)
    q.header.id = qid
    return bytes(q.pack())


@pytest.mark.parametrize(("first", "then", "transport", "kept"), [
    pytest.param(_asked(1), _asked(2), "udp", True, id="the same question, another ID"),
    pytest.param(_asked(7), _asked(7), "tcp", True, id="the same packet"),
    pytest.param(_asked(1), _asked(2, "TXT"), "udp", False, id="another question"),
    pytest.param(_asked(1), bytes(dnslib.DNSRecord.question(MX1, "A").reply().pack()), "udp", False,
                 id="a response is never answered"),
    pytest.param(b"\x00\x01", b"\x00\x02", "udp", False, id="no header"),
])
def test_answers_remembered_are_the_answers_served(first: bytes, then: bytes, transport: str,
                                                   kept: bool) -> None:
    answers = dnsserve.Answers(ZONE)
    assert answers.serve(first, transport) == serve(ZONE, first, transport)
    again = answers.serve(then, transport)
    assert again == serve(ZONE, then, transport)  # what serve() says of this very packet
    if again.out is not None:
        assert again.out[:2] == then[:2]  # under the asker's ID
    assert (len(answers._served) == 1) is kept


def test_answers_keep_a_bounded_number_of_packets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsserve, "ANSWERED_MAX", 2)
    answers = dnsserve.Answers(ZONE)
    for qtype in ("A", "MX", "TXT"):
        assert answers.serve(_asked(1, qtype), "udp") == serve(ZONE, _asked(1, qtype), "udp")
    assert len(answers._served) == 2


class _Signatures:  # stands for a zone's signed data: what answers_for tells apart is identity
    def covers(self, qname: str) -> bool:
        return False

    def answer(self, zone: Zone, request: dnslib.DNSRecord) -> dnslib.DNSRecord | None:
        return None


SIGNED = _Signatures()


@pytest.mark.parametrize(("first", "then", "shared"), [
    pytest.param(ZONE, build_zone(WORLD, {MX1: "127.0.0.1", DEFAULT: "127.0.0.1"}), True,
                 id="an equal zone built again"),
    pytest.param(ZONE, ZONE, True, id="the same zone"),
    pytest.param(ZONE, BIG_ZONE, False, id="another zone"),
    pytest.param(ZONE, build_zone(WORLD, {MX1: "127.0.0.2", DEFAULT: "127.0.0.1"}), False,
                 id="another address"),
    pytest.param(replace(ZONE, signed=SIGNED), replace(ZONE, signed=_Signatures()), False,
                 id="equal records, other signatures"),
    pytest.param(replace(ZONE, signed=SIGNED), replace(ZONE, signed=SIGNED), True,
                 id="equal records, the same signatures"),
    pytest.param(ZONE, replace(ZONE, signed=SIGNED), False, id="unsigned, then signed"),
])
def test_zones_share_answers_only_when_they_answer_alike(first: Zone, then: Zone,
                                                         shared: bool) -> None:
    assert (dnsserve.answers_for(first) is dnsserve.answers_for(then)) is shared
    assert dnsserve.answers_for(then).zone == then


def test_answers_are_kept_for_a_bounded_number_of_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsserve, "ZONES_MAX", 2)
    monkeypatch.setattr(dnsserve, "_SHARED", {})
    kept = dnsserve.answers_for(ZONE)
    assert dnsserve.answers_for(BIG_ZONE) is not kept and dnsserve.answers_for(ZONE) is kept
    dnsserve.answers_for(replace(ZONE, signed=SIGNED))  # a third: the process starts again
    assert len(dnsserve._SHARED) == 1 and dnsserve.answers_for(ZONE) is not kept


# ---- the attacks' wiring: spoof-mx and the record's bare names --------------------------------
def _step(*attacks: Attack, mx: tuple[str, ...] = (MX1,)) -> Step:
    return Step(0, replace(WORLD, dns=DnsSpec(mx=mx)), attack=attacks)


def _scenario(*steps: Step) -> Scenario:
    return Scenario("s", "s.toml", "t", steps=steps)


@pytest.mark.parametrize(("scenario_", "spoofed"), [
    pytest.param(_scenario(_step(Attack("spoof-mx"))), True, id="one step spoofs"),
    pytest.param(_scenario(_step(), _step(Attack("spoof-mx", cert="expired"))), True, id="a later step spoofs"),
    pytest.param(_scenario(_step(Attack("strip-starttls"))), False, id="no spoof"),
    pytest.param(_scenario(_step()), False, id="no attack"),
])
def test_spoofs_mx(scenario_: Scenario, spoofed: bool) -> None:
    assert spoofs_mx(scenario_) is spoofed


@pytest.mark.parametrize(("hosts", "listeners", "relays"), [
    pytest.param((MX1, MX2), (MX1, MX2), {MX1: MX1, MX2: MX2}, id="every MX relays to itself"),
    pytest.param((MX1, MX2), (MX1, MX2, ATTACKER_MX), {MX1: MX1, MX2: MX2, ATTACKER_MX: MX1}, id="the attacker's MX relays to the first"),
])
def test_upstreams(hosts: tuple[str, ...], listeners: tuple[str, ...], relays: dict[str, str]) -> None:
    assert upstreams(hosts, listeners) == relays


INTERCEPT = Attack("intercept-tls", hosts=(ATTACKER_MX,), cert="valid")


@pytest.mark.parametrize(("step", "attacks"), [
    pytest.param(_step(), (), id="no attack"),
    pytest.param(_step(Attack("strip-starttls")), (Attack("strip-starttls"),), id="a proxy attack as is"),
    pytest.param(_step(Attack("spoof-mx")), (INTERCEPT,), id="spoof-mx: intercept at the attacker's MX, valid"),
    pytest.param(_step(Attack("spoof-mx", cert="expired")), (replace(INTERCEPT, cert="expired"),), id="spoof-mx: with its cert"),
    pytest.param(_step(Attack("spoof-mx"), Attack("strip-starttls")), (Attack("strip-starttls"), INTERCEPT), id="both, proxy first"),
    pytest.param(_step(Attack("drop-sts-txt"), Attack("block-policy-fetch")), (), id="other layers: nothing"),
])
def test_proxy_attacks(step: Step, attacks: tuple[Attack, ...]) -> None:
    assert proxy_attacks(step) == attacks


@pytest.mark.parametrize(("attack", "bare"), [
    pytest.param(Attack("strip-starttls"), True, id="strip-starttls"),
    pytest.param(Attack("reject-starttls"), True, id="reject-starttls"),
    pytest.param(Attack("corrupt-starttls"), True, id="corrupt-starttls"),
    pytest.param(Attack("inject-response"), True, id="inject-response"),
    pytest.param(Attack("drop-sts-txt"), True, id="drop-sts-txt"),
    pytest.param(Attack("drop-tlsrpt-txt"), True, id="drop-tlsrpt-txt"),
    pytest.param(Attack("strip-starttls", hosts=(MX1,)), False, id="with hosts: a table"),
    pytest.param(Attack("intercept-tls", cert="self-signed"), False, id="intercept-tls takes cert"),
    pytest.param(Attack("spoof-mx", cert="valid"), False, id="spoof-mx takes cert"),
    pytest.param(Attack("block-policy-fetch", how="refused"), False, id="block-policy-fetch takes how"),
])
def test_shown_bare(attack: Attack, bare: bool) -> None:
    assert shown_bare(attack) is bare


def test_every_attack_kind_is_judged_bare_or_not() -> None:
    assert {a for a in ATTACKS if shown_bare(Attack(a))} == {
        "strip-starttls", "reject-starttls", "corrupt-starttls", "inject-response", "drop-sts-txt", "drop-tlsrpt-txt",
        # the DNSSEC attacks (issue 16) but forge-tlsa take no option either
        "strip-rrsig", "drop-tlsa", "expire-rrsig", "remove-ds", "wrong-ds"}  # forge-tlsa takes `cert`


# ---- tables: every row is reachable, every key handled ----------------------------------------
TLS, CLEAR = (Stored(tls=True),), (Stored(tls=False),)
STEP_CASES = [  # (expect, tolerate, evidence) -> the rule that decides, in _STEP_RULES order
    ("delivered-tls", (), Evidence(stored=TLS, lab_error="dns died")),
    ("not-delivered", (), Evidence(attacker_saw_body=True)),
    ("not-delivered", (), Evidence(attacker_saw_mail_from=True)),
    ("not-delivered", (), Evidence(sender_state="bounced")),
    ("delivered-tls", (), Evidence(stored=TLS)),
    ("not-delivered", ("delivered-plaintext",), Evidence(stored=CLEAR)),
    ("not-delivered", (), Evidence(stored=CLEAR)),
]


def _deciding(rules: tuple[tuple[object, ...], ...], facts: object) -> int:
    return next(i for i, rule in enumerate(rules) if rule[0](facts))  # type: ignore[operator]


def test_every_step_rule_decides_some_case_and_the_last_always_applies() -> None:
    rules = verdict._STEP_RULES
    decided = [_deciding(rules, verdict._Step(e, t, ev, "", verdict.outcome(ev))) for e, t, ev in STEP_CASES]
    assert decided == list(range(len(rules)))
    assert all(rules[-1][0](verdict._Step(e, t, ev, "", verdict.outcome(ev))) for e, t, ev in STEP_CASES)


OK = ReportSeen("https", successes=1)
CHECK_CASES: list[tuple[tuple[str, ...] | Literal[False], list[ReportSeen], bool]] = [
    # (expected, reports, capable), in _CHECK_RULES order
    ((), [OK], False),
    (False, [OK], True),
    (False, [], True),
    ((), [], True),
    ((), [ReportSeen("https", problems=("bad",))], True),
    ((), [OK], True),
]


def test_every_report_check_rule_decides_some_case() -> None:
    rules = verdict._CHECK_RULES
    decided = [_deciding(rules, verdict._Reports(e, r, c)) for e, r, c in CHECK_CASES]
    assert decided == list(range(len(rules)))


REPORT_CASES = [  # (report, want), in _REPORT_RULES order
    (ReportSeen("https", problems=("bad",)), frozenset()),
    (ReportSeen("https", covers_domain=False), frozenset()),
    (ReportSeen("https", failures=1), frozenset()),
    (ReportSeen("https"), frozenset()),
    (OK, frozenset({"starttls-not-supported"})),
]


def test_every_report_rule_finds_some_fault_and_a_good_report_none() -> None:
    rules = verdict._REPORT_RULES
    assert [next(i for i, (applies, _) in enumerate(rules) if applies(r, w)) for r, w in REPORT_CASES] == list(range(len(rules)))
    assert not any(applies(OK, frozenset()) for applies, _ in rules)


def test_the_policy_readers_are_the_policy_keys_and_fields() -> None:
    assert set(scenario._POLICY_READERS) == scenario.POLICY_KEYS
    assert set(scenario._POLICY_READERS) <= {f.name for f in fields(PolicySpec)}


def test_every_subcommand_has_a_handler_and_no_handler_lacks_one() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(cli._COMMANDS) == set(sub.choices)


def test_an_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(cli.UsageError, match="unknown command 'nosuch'"):
        cli._dispatch(argparse.Namespace(command="nosuch"), cli.Environment())


# ---- the new core modules stay pure ------------------------------------------------------------
MODULES = [policyserve, dnsserve, attackplan]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_decision_modules_import_no_io(module: ModuleType) -> None:
    assert module.__file__ is not None
    assert not imported_roots(module.__file__) & (IO_MODULES | {"subprocess", "threading", "aiohttp"})
    # dnslib itself imports socket: only the event loop and TLS must stay out
    assert loaded_by_importing(module.__name__, among=frozenset({"asyncio", "ssl"})) == set()
