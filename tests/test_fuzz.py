"""Hostile input for the pure parsers (issue 6): the TXT parsers (MTA-STS and TLS-RPT), the
policy parser, the SMTP reply parser and rewriter with the relay around them, and the scenario
loader. Whatever comes in, each raises nothing but the lab's own error for its phase, and what
it accepts it can use.

Grammar-aware generators (pieces of the real syntax, mutations of real documents) reach deeper
than random bytes; tests/test_policy_props.py and tests/test_smtp.py hold the random-bytes and
round-trip properties, which are not repeated here. The number of examples comes from the
hypothesis profile: 100 by default, many more under `make fuzz` (tests/conftest.py).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from downgrade_lab.core import scenario as loader
from downgrade_lab.core.model import ATTACKS, BLOCK_HOWS, CERT_VARIANTS, DNS_FAULTS, MODES, OUTCOMES, Scenario
from downgrade_lab.core.policy import (
    STS_POLICY_FETCH_ERROR,
    STS_POLICY_INVALID,
    STS_WEBPKI_INVALID,
    PolicyError,
    join_strings,
    parse_policy,
    parse_txt_records,
    serialise_policy,
    validate_fetch,
)
from downgrade_lab.core.smtp import (
    MAX_LINE,
    CloseBoth,
    Command,
    Relay,
    Reply,
    SendToClient,
    SendToServer,
    SmtpError,
    StartPassthrough,
    StartTLSWithClient,
    StartTLSWithServer,
)
from downgrade_lab.core.tlsrpt import RESULT_TYPES, TlsRptError, parse_tlsrpt_records
from downgrade_lab.errors import LabError, ScenarioError
from downgrade_lab.services.dns import build_zone
from tests.test_policy_props import policies
from tests.test_smtp import well_formed

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- TXT records ------------------------------------------------------------------------------
STS_PIECES = ["v=STSv1", "v=STSv1;", ";", " ; ", "\t;", "; ", "id=", "id=abc123", "id=" + "a" * 32,
              "id=" + "a" * 33, "id=a-b", "id=1;id=2", "x=y", "x_y.z=1", "x", "=", " ", "\t",
              "v=STSv10", "v=stsv1", "\x00", "\u00e9", "\x7f", "v=STSv1 ;", "ID=1"]
sts_text = st.lists(st.sampled_from(STS_PIECES) | st.text(max_size=4), max_size=10).map("".join)
# one record as it comes off the wire: 1 to 4 character-strings, bytes of any value
wire_record = st.lists(st.binary(max_size=16) | sts_text.map(lambda s: s.encode("utf-8")),
                       min_size=1, max_size=4)


@FUZZ
@given(st.lists(wire_record, max_size=3))
def test_sts_txt_from_the_wire_raises_only_policy_errors(records: list[list[bytes]]) -> None:
    joined = [join_strings(parts) for parts in records]
    try:
        record = parse_txt_records(joined)
    except PolicyError as exc:
        assert exc.result_type in (None, STS_POLICY_FETCH_ERROR)  # none is no record at all
        return
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", record.id)
    assert any(f"id={record.id}" in text for text in joined)


RPT_PIECES = ["v=TLSRPTv1", "v=TLSRPTv1;", ";", " ; ", "rua=", "mailto:a@b.test",
              "mailto:tls%2Brpt@b.test?subject=x", "https://r.test/x", "https://", "mailto:",
              "mailto:no-at", ",", " , ", "x=y", "=", "v=TLSRPTv10", "v=tlsrptv1", "\x00", " "]
rpt_text = st.lists(st.sampled_from(RPT_PIECES) | st.text(max_size=4), max_size=10).map("".join)


@FUZZ
@given(st.lists(rpt_text | st.lists(rpt_text, min_size=1, max_size=3), max_size=3))
def test_tlsrpt_txt_raises_only_tlsrpt_errors(records: list[str | list[str]]) -> None:
    try:
        record = parse_tlsrpt_records(records)
    except TlsRptError:
        return
    text = "".join("".join(r) if isinstance(r, list) else r for r in records)
    assert record.rua and all(uri in text for uri in record.rua)


# ---- the policy: mutations of valid policies ---------------------------------------------------

@st.composite
def mutated_policy(draw: st.DrawFn) -> bytes:
    body = bytearray(serialise_policy(draw(policies())).encode("utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup-line", "lf", "bom", "nul"]))
        at = draw(st.integers(0, len(body)))
        if op == "flip" and at < len(body):
            body[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del body[at:at + draw(st.integers(1, 12))]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
                [b":", b" ", b"\t", b"\r", b"\n", b"mx: *.", b"mode: ", b"max_age: 9", b"\xc3"]))
        elif op == "dup-line":
            lines = bytes(body).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            body = bytearray(b"\n".join([*lines[:i + 1], lines[i], *lines[i + 1:]]))
        elif op == "lf":
            body = bytearray(bytes(body).replace(b"\r\n", b"\n"))
        elif op == "bom":
            body[0:0] = b"\xef\xbb\xbf"
        else:
            body[at:at] = b"\x00"
    return bytes(body)


@FUZZ
@given(mutated_policy(), st.sampled_from([None, "text/plain", "text/plain; charset=utf-8",
                                          "TEXT/PLAIN;x=y", "text/html", ""]))
def test_a_mutated_policy_is_a_policy_or_a_policy_error(body: bytes, content_type: str | None) -> None:
    try:
        policy = validate_fetch(200, content_type, body)
    except PolicyError as exc:
        assert exc.result_type in (STS_POLICY_FETCH_ERROR, STS_POLICY_INVALID, STS_WEBPKI_INVALID)
        return
    assert parse_policy(serialise_policy(policy)) == policy


# ---- SMTP replies: parse, rewrite, encode --------------------------------------------------------
wire_line = st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
ehlo_line = st.sampled_from([b"STARTTLS", b"starttls", b"SIZE 1000", b"PIPELINING", b"XXXXXXXA",
                             b"STARTTLSX", b"8BITMIME", b"STARTTLS now"]) | wire_line


@FUZZ
@given(code=st.sampled_from([b"250", b"220", b"550", b"999", b"25", b"2500"]),
       lines=st.lists(ehlo_line, min_size=1, max_size=6),
       keyword=st.sampled_from(["STARTTLS", "SIZE", "PIPELINING", "X"]))
def test_rewriting_any_parsed_reply_stays_well_formed(code: bytes, lines: list[bytes],
                                                      keyword: str) -> None:
    raw = [code + (b"-" if i < len(lines) - 1 else b" ") + text + b"\r\n"
           for i, text in enumerate(lines)]
    try:
        reply = Reply.parse(raw)
    except SmtpError:
        return
    for out in (reply.without_keyword(keyword), reply.with_keyword_renamed(keyword, "XXXXXXXA")):
        wire = out.encode()
        well_formed(wire)
        assert Reply.parse(wire.splitlines(True)) == out
        assert out.lines[0] == reply.lines[0]  # the greeting line is never touched
    assert keyword not in reply.without_keyword(keyword).keywords


# ---- the relay: whole dialogues from both sides ---------------------------------------------------
CLIENT = [b"EHLO x.test\r\n", b"HELO x\r\n", b"MAIL FROM:<a@s.test>\r\n", b"RCPT TO:<b@e.test>\r\n",
          b"DATA\r\n", b"STARTTLS\r\n", b"starttls\r\n", b"QUIT\r\n", b"NOOP\n", b".\r\n", b"..x\r\n",
          b"body\r\n", b"\r\n", b"\n", b"BDAT 3 LAST\r\nabc"]
SERVER = [b"220 hi\r\n", b"250 ok\r\n", b"250-mx\r\n250-STARTTLS\r\n250 SIZE 9\r\n", b"250-a\r\n",
          b"354 go\r\n", b"220 Ready\r\n", b"454 no\r\n", b"502 no\r\n", b"221 bye\r\n", b"5",
          b"00 x\r\n", b"250 x\n", b"hello\r\n"]
side_bytes = st.one_of(st.tuples(st.just("client"), st.sampled_from(CLIENT) | st.binary(max_size=40)),
                       st.tuples(st.just("server"), st.sampled_from(SERVER) | st.binary(max_size=40)),
                       st.tuples(st.sampled_from(["client-eof", "server-eof", "tls-failed"]),
                                 st.just(b"")))
PROXY_KINDS = sorted(k for k, (layer, _) in ATTACKS.items() if layer == "proxy")


@FUZZ
@given(kinds=st.lists(st.sampled_from(PROXY_KINDS), max_size=2, unique=True),
       script=st.lists(side_bytes, max_size=30))
def test_any_dialogue_never_raises_and_keeps_its_bounds(kinds: list[str],
                                                        script: list[tuple[str, bytes]]) -> None:
    from downgrade_lab.core.model import Attack
    relay = Relay([Attack(k) for k in kinds], mx_host="mx1.example.test")
    closed = False
    for side, data in script:
        if side == "client":
            out: list[Command] = relay.receive_client(data)
        elif side == "server":
            out = relay.receive_server(data)
        elif side == "tls-failed":
            out = relay.tls_failed("sender", "fuzz") if relay.mode != "closed" else []
        else:
            out = relay.client_eof() if side == "client-eof" else relay.server_eof()
        if closed:
            assert out == []  # nothing after the end
        well_formed(b"".join(c.data for c in out if isinstance(c, SendToClient) and not c.raw))
        if any(isinstance(c, StartTLSWithClient | StartTLSWithServer) for c in out):
            assert "intercept-tls" in kinds
        # bounded memory whatever either side sends (white box: the relay's two line buffers)
        assert len(relay._client) < MAX_LINE and len(relay._server) < MAX_LINE
        if any(isinstance(c, CloseBoth) for c in out):
            closed = True
            assert relay.mode == "closed"
        if any(isinstance(c, StartPassthrough) for c in out):
            break  # the handler feeds nothing but EOFs from here


body_line = st.one_of(
    st.tuples(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
              st.sampled_from([b"\r\n", b"\n"])).map(b"".join),
    st.sampled_from([b".\r\n", b".\n", b"..\r\n", b". \r\n", b".\r\r\n", b"\r\n", b"x.\r\n"]))


@FUZZ
@given(lines=st.lists(body_line, max_size=40), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_the_message_reaches_the_receiver_unchanged_at_any_split(lines: list[bytes],
                                                                 cuts: list[int]) -> None:
    """The relay passes the mail data on in blocks; a line-by-line model says where it ends."""
    ends = [i for i, line in enumerate(lines) if line.rstrip(b"\n").removesuffix(b"\r") == b"."]
    lines = lines[:ends[0] + 1] if ends else [*lines, b".\r\n"]
    data = b"".join(lines)
    relay = Relay()
    for server, client in [(b"220 hi\r\n", b"MAIL FROM:<a@s.test>\r\n"), (b"250 ok\r\n", b"DATA\r\n")]:
        relay.receive_server(server)
        relay.receive_client(client)
    assert relay.receive_server(b"354 go\r\n") == [SendToClient(b"354 go\r\n")]
    stream = data + b"QUIT\r\n"
    out: list[Command] = []
    for a, b in zip([0, *sorted(set(cuts))], [*sorted(set(cuts)), len(stream)], strict=False):
        out += relay.receive_client(stream[a:b])
    assert b"".join(c.data for c in out if isinstance(c, SendToServer)) == stream
    assert relay.mode == "lines"
    entry = [e for e in relay.transcript if e.kind == "data"]
    assert [e.said for e in entry] == [f"[message data: {len(data)} bytes]"]
    assert relay.transcript[-1].said == "QUIT"  # a command again after the end of the data


# ---- the scenario loader -------------------------------------------------------------------------
KEYS = sorted(loader.TOP_KEYS | loader.DNS_KEYS | loader.MESSAGE_KEYS | loader.POLICY_KEYS
              | loader.RECEIVER_KEYS | loader.STEP_KEYS | loader.SET_KEYS | loader.ATTACK_KEYS)
WORDS = sorted({*ATTACKS, *OUTCOMES, *MODES, *CERT_VARIANTS, *DNS_FAULTS, *BLOCK_HOWS,
                *RESULT_TYPES, "auto", "mx1.example.test", "MX2.Example.Test.", "*.example.test",
                "bob@example.test", "@", "2d", "36h", "-1s", "1e400", "A-01", "a-01", "",
                "_mta-sts.example.test", "/moved.txt", "/.well-known/mta-sts.txt", "text/plain",
                "v=STSv1; id=1", "\u00e9", "x" * 300})
# What tomllib can give: no surrogates in strings, no None.
toml_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
toml_leaf = st.one_of(st.sampled_from(WORDS), toml_text, st.integers(), st.integers(-3, 700),
                      st.floats(), st.booleans(), st.datetimes(), st.dates(), st.times())
toml_key = st.sampled_from(KEYS) | toml_text
toml_value = st.recursive(toml_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(toml_key, inner, max_size=5), max_leaves=20)
toml_doc = st.dictionaries(toml_key, toml_value, max_size=8)


def _catalogue() -> list[dict[str, Any]]:
    return [tomllib.loads(p.read_text()) for p in sorted((ROOT / "scenarios").rglob("*.toml"))]


CATALOGUE = _catalogue()


def exercise(scenario: Scenario) -> None:
    """What the lab does with an accepted scenario must work too (LabError at worst)."""
    scenario.mx_hosts()
    scenario.needs()
    addresses = {h: "127.0.0.1" for h in scenario.mx_hosts()}
    addresses["mx.attacker.test"] = "127.0.0.2"
    for step in scenario.steps:
        world = step.world
        world.sts_records()
        world.tlsrpt_records()
        if world.policy is not None and world.policy.pad_to <= 1 << 20:
            world.policy.auto_id()
        try:
            build_zone(world, addresses, step.attacks("dns"))
        except LabError:
            pass


def parse(doc: dict[str, Any]) -> None:
    try:
        scenario = loader.parse_scenario(doc, file="fuzz.toml", scenario_id="fuzz")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.toml: ")  # names the file
        return
    exercise(scenario)


@FUZZ
@given(toml_doc)
def test_any_decoded_document_is_a_scenario_or_a_scenario_error(doc: dict[str, Any]) -> None:
    parse(doc)


@st.composite
def mutated_scenario(draw: st.DrawFn) -> dict[str, Any]:
    """A catalogue scenario with one to three of its values replaced, deleted or added to, at
    any depth: the loader's deep branches, which random documents rarely reach."""
    doc: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(CATALOGUE)))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(toml_value)
            elif action == "delete":
                del node[key]
            elif isinstance(node, dict):
                node[draw(toml_key)] = draw(toml_value)
            else:
                node.append(draw(toml_value))
            break
    return doc


@FUZZ
@given(mutated_scenario())
def test_a_mutated_catalogue_scenario_is_a_scenario_or_a_scenario_error(doc: dict[str, Any]) -> None:
    parse(doc)


def _literal(value: Any) -> str:
    """A TOML rendering of `value` (a string always as a basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_literal(v)}" for k, v in value.items()) + " }"
    return str(value)


TABLES = ["[dns]", "[policy]", "[receiver]", "[message]", "[message.headers]", "[dns.cname]",
          "[dns.fault]", "[[step]]", "[[step.attack]]", "[step.set]", "[step.set.policy]",
          "[step.set.dns]", "[step.set.receiver]", "[step]", "[[dns]]", "[policy.mx]"]
toml_line = st.one_of(
    st.builds(lambda k, v: f"{k} = {_literal(v)}", toml_key.map(
        lambda k: k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)), toml_value),
    st.sampled_from(TABLES), toml_text, st.just('title = "t"'), st.just('expect = "delivered"'))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz") / "scenario.toml"


@FUZZ
@given(st.lists(toml_line, max_size=16).map("\n".join) | st.binary(max_size=200))
def test_any_scenario_file_loads_or_is_a_scenario_error(scratch: Path, text: str | bytes) -> None:
    scratch.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    try:
        scenario = loader.load_scenario(scratch, "fuzz")
    except ScenarioError as exc:
        assert exc.file == str(scratch)
        return
    exercise(scenario)
