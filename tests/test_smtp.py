"""The sans-I/O relay, as transcripts: feed bytes, assert the commands it returns (mitmproxy
Playbook style). No sockets here; tests/test_mitm.py drives the same relay over real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downgrade_lab.core import smtp
from downgrade_lab.core.model import ATTACKS, Attack
from downgrade_lab.core.smtp import (
    MAX_LINE,
    MAX_PLAINTEXT,
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
from tests.purity import imported_roots, loaded_by_importing

MX = "mx1.example.test"
GREETING = b"220 mx1.example.test ESMTP\r\n"
EHLO = b"EHLO sender.test\r\n"
DATA_DIR = Path(__file__).parent / "data"
PROXY_KINDS = sorted(k for k, (layer, _) in ATTACKS.items() if layer == "proxy")


def relay(*kinds: str, cert: str | None = None) -> Relay:
    return Relay([Attack(kind, cert=cert) for kind in kinds], mx_host=MX)


def after_ehlo(*kinds: str) -> Relay:
    """A relay that has passed the greeting and an EHLO whose reply is still due."""
    r = relay(*kinds)
    assert r.receive_server(GREETING) == [SendToClient(GREETING)]
    assert r.receive_client(EHLO) == [SendToServer(EHLO)]
    return r


def to_client(commands: list[Command]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, SendToClient))


def feed_split(r: Relay, data: bytes, cuts: list[int]) -> list[Command]:
    out: list[Command] = []
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        out += r.receive_server(data[a:b])
    return out


_LINE = re.compile(rb"([2-5]\d\d)([ -]|(?=\r?\n))[^\r\n]*\r?\n\Z")


def well_formed(data: bytes) -> list[list[bytes]]:
    """An independent check of reply framing: every line `CODE-...` or `CODE ...`/`CODE`,
    the same code within a reply, and the bytes end at the end of a reply."""
    replies: list[list[bytes]] = []
    current: list[bytes] = []
    for line in data.splitlines(True):
        m = _LINE.match(line)
        assert m, f"malformed reply line {line!r} in {data!r}"
        assert not current or current[0][:3] == line[:3], f"code changes inside {data!r}"
        current.append(line)
        if m.group(2) != b"-":
            replies.append(current)
            current = []
    assert not current, f"unfinished reply in {data!r}"
    return replies


def keywords(reply: bytes) -> list[bytes]:
    return [line[4:].strip().split(b" ")[0].upper() for line in reply.splitlines()[1:]]


# ---- Reply: one line per case (mox style) ----

@pytest.mark.parametrize(("lines", "reply"), [
    ([b"250 ok\r\n"], Reply(250, ("ok",))),
    ([b"250\r\n"], Reply(250, ("",))),
    ([b"250 \n"], Reply(250, ("",))),
    ([b"250-mx1\r\n", b"250-\r\n", b"250 SIZE 10"], Reply(250, ("mx1", "", "SIZE 10"))),
    ([b"554 5.7.1 no"], Reply(554, ("5.7.1 no",))),
], ids=["single", "bare-code", "lf-and-empty-text", "multi-with-empty", "no-terminator"])
def test_parse_good(lines: list[bytes], reply: Reply) -> None:
    assert Reply.parse(lines) == reply
    well_formed(reply.encode())


@pytest.mark.parametrize("lines", [
    [], [b"hello\r\n"], [b"25 ok"], [b"250ok"], [b"199 ok"], [b"650 ok"], [b"250-ok"],
    [b"250 a", b"250 b"], [b"250-a", b"251 b"], [b"250 a\rb\r\n"], [b"2x0 ok"],
], ids=["empty", "text", "short-code", "no-separator", "code-1xx", "code-6xx",
        "ends-with-dash", "two-finals", "code-changes", "bare-cr", "not-digits"])
def test_parse_bad(lines: list[bytes]) -> None:
    with pytest.raises(SmtpError) as info:
        Reply.parse(lines)
    assert info.value.culprit == "receiver"


@pytest.mark.parametrize(("reply", "wire"), [
    (Reply(250, ("mx1", "PIPELINING", "SIZE 5")), b"250-mx1\r\n250-PIPELINING\r\n250 SIZE 5\r\n"),
    (Reply(502, ("5.5.1 no",)), b"502 5.5.1 no\r\n"),
    (Reply(250, ("mx1", "")), b"250-mx1\r\n250\r\n"),
], ids=["multi", "single", "empty-last"])
def test_encode(reply: Reply, wire: bytes) -> None:
    assert reply.encode() == wire


@pytest.mark.parametrize(("code", "lines"),
                         [(99, ("x",)), (600, ("x",)), (250, ()), (250, ("a\r\nb",))],
                         ids=["low-code", "high-code", "no-lines", "crlf-in-text"])
def test_reply_validates_itself(code: int, lines: tuple[str, ...]) -> None:
    with pytest.raises(SmtpError):
        Reply(code, lines)


# ---- the attack table ----

def test_transform_table_covers_exactly_the_proxy_attacks() -> None:
    assert sorted(smtp.TRANSFORMS) == PROXY_KINDS


def test_relay_refuses_attacks_that_act_elsewhere() -> None:
    with pytest.raises(SmtpError, match="spoof-mx"):
        Relay([Attack("spoof-mx")])


def test_pure_module_imports_no_io() -> None:
    for module in ("lab/core/smtp.py", "lab/core/smtpwire.py"):
        assert not imported_roots(module) & {"asyncio", "socket", "ssl", "selectors"}
    # and nothing it imports pulls them in either
    assert loaded_by_importing("downgrade_lab.core.smtp", among=frozenset({"asyncio", "socket", "ssl"})) == set()


# ---- EHLO rewriting at every split point ----

EHLO_REPLIES = {
    "single": b"250 mx1.example.test\r\n",
    "first": b"250-mx1.example.test\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    "middle": b"250-mx1.example.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
    "last": b"250-mx1.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
    "only": b"250-mx1.example.test\r\n250 STARTTLS\r\n",
    "lf-lowercase": b"250-mx1.example.test\n250-starttls\n250 SIZE 1000\n",
}
# what the sender must hear, per attack
STRIPPED = {
    "single": EHLO_REPLIES["single"],
    "first": b"250-mx1.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    "middle": b"250-mx1.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    "last": b"250-mx1.example.test\r\n250 PIPELINING\r\n",
    "only": b"250 mx1.example.test\r\n",
    "lf-lowercase": b"250-mx1.example.test\r\n250 SIZE 1000\r\n",
}


def expected_ehlo(kind: str | None, shape: str) -> bytes:
    raw = EHLO_REPLIES[shape]
    if kind == "strip-starttls":
        return STRIPPED[shape]
    if kind == "corrupt-starttls" and b"tarttls" in raw.lower():
        return Reply.parse(raw.splitlines()).with_keyword_renamed("STARTTLS", "XXXXXXXA").encode()
    return raw  # every other attack, and none, leaves the capability alone


@pytest.mark.parametrize("shape", list(EHLO_REPLIES))
@pytest.mark.parametrize("kind", [None, "strip-starttls", "reject-starttls", "corrupt-starttls"])
def test_ehlo_reply_at_every_split(kind: str | None, shape: str) -> None:
    raw = EHLO_REPLIES[shape]
    want = expected_ehlo(kind, shape)
    kinds = (kind,) if kind else ()
    splits = [[cut] for cut in range(1, len(raw))] + [list(range(1, len(raw)))]  # + byte by byte
    for cuts in splits:
        r = after_ehlo(*kinds)
        out = feed_split(r, raw, cuts)
        assert to_client(out) == want, cuts
        assert len(out) == 1, "the reply goes out whole, once complete"
        well_formed(want)
        had = b"STARTTLS" in keywords(raw)
        hidden = kind in ("strip-starttls", "corrupt-starttls")
        assert (b"STARTTLS" in keywords(want)) == (had and not hidden)
        if kind == "corrupt-starttls" and had:
            assert b"XXXXXXXA" in keywords(want)
        entry = r.transcript[-1]
        assert entry.changed == (want != raw) and entry.origin == "receiver"
        assert entry.attack == (kind if want != raw else None)


def test_only_the_reply_to_ehlo_is_rewritten() -> None:
    # a greeting, a HELO reply and a failing EHLO reply mentioning STARTTLS stay as they are
    greeting = b"220-mx1.example.test\r\n220 STARTTLS welcome\r\n"
    r = relay("strip-starttls")
    assert r.receive_server(greeting) == [SendToClient(greeting)]
    r.receive_client(b"HELO sender.test\r\nEHLO sender.test\r\n")
    helo = b"250-mx1.example.test\r\n250 STARTTLS\r\n"
    assert r.receive_server(helo) == [SendToClient(helo)]
    refused = b"550-no EHLO for you\r\n550 STARTTLS\r\n"
    assert r.receive_server(refused) == [SendToClient(refused)]


# ---- the STARTTLS command ----

@pytest.mark.parametrize(("kind", "answer"), [
    ("strip-starttls", b"502 5.5.1 STARTTLS not supported\r\n"),
    ("reject-starttls", b"454 4.7.0 TLS not available due to temporary reason\r\n"),
])
def test_attacker_answers_starttls_itself(kind: str, answer: bytes) -> None:
    r = after_ehlo(kind)
    r.receive_server(EHLO_REPLIES["middle"])
    assert r.receive_client(b"STARTTLS\r\n") == [SendToClient(answer)]  # nothing to the receiver
    command, reply = r.transcript[-2:]
    assert (command.said, command.heard, command.changed) == ("STARTTLS", None, True)
    assert command.attack == kind
    assert (reply.origin, reply.attack, reply.heard) == ("attacker", kind, answer.decode().strip())
    # the sender goes on in the clear, and the attacker reads it
    mail = b"MAIL FROM:<a@sender.test>\r\n"
    assert r.receive_client(mail) == [SendToServer(mail)]
    assert r.saw_mail_from and r.mode == "lines"


def test_corrupt_renames_the_command_and_the_receiver_refuses_it() -> None:
    r = after_ehlo("corrupt-starttls")
    r.receive_server(EHLO_REPLIES["first"])
    assert r.receive_client(b"starttls\r\n") == [SendToServer(b"XXXXXXXA\r\n")]
    refused = b'500 Error: command "XXXXXXXA" not recognized\r\n'
    assert r.receive_server(refused) == [SendToClient(refused)]
    assert r.mode == "lines"
    assert r.transcript[-2].heard == "XXXXXXXA" and r.transcript[-2].said == "starttls"


def test_without_attack_starttls_goes_through_and_the_relay_steps_aside() -> None:
    r = after_ehlo()
    r.receive_server(EHLO_REPLIES["middle"])
    assert r.receive_client(b"STARTTLS\r\n") == [SendToServer(b"STARTTLS\r\n")]
    assert r.receive_client(b"\x16\x03\x01early") == []  # held until the reply says what it is
    out = r.receive_server(b"220 2.0.0 Ready to start TLS\r\n\x16\x03\x03server")
    assert out == [
        SendToClient(b"220 2.0.0 Ready to start TLS\r\n"),
        SendToClient(b"\x16\x03\x03server", raw=True),
        SendToServer(b"\x16\x03\x01early", raw=True),
        StartPassthrough(),
    ]
    assert r.mode == "passthrough" and r.transcript[-1].said == "tls-passthrough"
    assert r.client_plaintext == EHLO + b"STARTTLS\r\n" and not r.saw_mail_from
    with pytest.raises(SmtpError, match="lab"):
        r.receive_client(b"more")
    assert r.client_eof() == [CloseBoth("sender closed the connection")]


def test_receiver_refusing_starttls_keeps_the_relay_in_line_mode() -> None:
    r = after_ehlo()
    r.receive_server(EHLO_REPLIES["last"])
    r.receive_client(b"STARTTLS\r\n")
    assert r.receive_client(b"QUIT\r\n") == []  # held
    out = r.receive_server(b"454 4.7.0 not now\r\n")
    assert out == [SendToClient(b"454 4.7.0 not now\r\n"), SendToServer(b"QUIT\r\n")]
    assert r.mode == "lines"


def test_pipelined_starttls_answer_waits_for_its_turn() -> None:
    r = after_ehlo("strip-starttls")
    r.receive_server(EHLO_REPLIES["only"])
    assert r.receive_client(b"NOOP\r\nSTARTTLS\r\n") == [SendToServer(b"NOOP\r\n")]
    assert r.receive_server(b"250 2.0.0 OK\r\n") == [
        SendToClient(b"250 2.0.0 OK\r\n502 5.5.1 STARTTLS not supported\r\n")]


def test_pipelined_mail_transaction_and_data_mode() -> None:
    r = after_ehlo("strip-starttls", "corrupt-starttls")
    r.receive_server(EHLO_REPLIES["first"])
    group = b"MAIL FROM:<a@s.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    assert r.receive_client(group) == [SendToServer(group)]
    body = b"Subject: t\r\n\r\nSTARTTLS\r\n250-STARTTLS\r\n..STARTTLS\r\ntoken-42\r\n.\r\n"
    assert r.receive_client(body[:20]) == []  # before 354 the body is held, never parsed
    assert r.receive_server(b"250 ok\r\n250 ok\r\n") == [SendToClient(b"250 ok\r\n250 ok\r\n")]
    out = r.receive_server(b"354 go ahead\r\n")
    assert out == [SendToClient(b"354 go ahead\r\n"), SendToServer(body[:14])]  # whole lines only
    # STARTTLS after the body is a command again; its made-up answer waits for the data's reply
    assert r.receive_client(body[20:] + b"STARTTLS\r\n") == [SendToServer(body[14:])]
    assert r.mode == "lines" and b"token-42" in r.client_plaintext
    assert r.transcript[-2].kind == "data"
    assert r.transcript[-2].said == f"[message data: {len(body)} bytes]"
    assert r.receive_server(b"250 queued\r\n") == [
        SendToClient(b"250 queued\r\n502 5.5.1 STARTTLS not supported\r\n")]


def test_intercept_upgrades_both_sides_in_order_and_reads_inside() -> None:
    r = after_ehlo("intercept-tls")
    r.receive_server(EHLO_REPLIES["middle"])
    assert r.receive_client(b"STARTTLS\r\n") == [SendToServer(b"STARTTLS\r\n")]
    r = _ready(r)
    assert r.receive_client(b"EHLO again\r\nMAIL FROM:<a@s.test>\r\n") == [
        SendToServer(b"EHLO again\r\nMAIL FROM:<a@s.test>\r\n")]
    # inside TLS there is no greeting: the first reply answers the new EHLO
    assert r.receive_server(EHLO_REPLIES["single"] + b"250 ok\r\n") == [
        SendToClient(EHLO_REPLIES["single"] + b"250 ok\r\n")]
    assert r.saw_mail_from and r.transcript[-1].tls and not r.transcript[0].tls


def _ready(r: Relay) -> Relay:
    assert r.receive_server(b"220 Ready to start TLS\r\n") == [
        StartTLSWithServer(MX), SendToClient(b"220 Ready to start TLS\r\n"),
        StartTLSWithClient(MX, "wrong-name" if r.attacks[0].cert else "self-signed")]
    assert r.transcript[-1].said == "tls-intercepted" and r.transcript[-1].origin == "attacker"
    return r


def test_intercept_uses_the_attack_certificate_and_a_failed_handshake_closes() -> None:
    r = relay("intercept-tls", cert="wrong-name")
    r.receive_server(GREETING)
    r.receive_client(b"STARTTLS\r\n")
    _ready(r)
    assert r.tls_failed("sender", "certificate unknown") == [
        CloseBoth("TLS handshake with the sender failed")]
    assert "certificate unknown" in r.transcript[-1].said


def test_inject_smuggles_replies_after_the_220() -> None:
    r = after_ehlo("inject-response")
    r.receive_server(EHLO_REPLIES["middle"])
    r.receive_client(b"STARTTLS\r\n")
    injected = b"250-attacker.invalid injected before TLS\r\n250 PIPELINING\r\n"
    assert r.receive_server(b"220 Ready\r\n") == [
        SendToClient(b"220 Ready\r\n" + injected), StartPassthrough()]
    entry = r.transcript[-2]
    assert (entry.origin, entry.attack, entry.changed) == ("attacker", "inject-response", True)


# ---- errors, EOF and bounds ----

@pytest.mark.parametrize(("side", "data", "culprit"), [
    ("server", b"hello world\r\n", "receiver"),
    ("server", b"250-a\r\n251 b\r\n", "receiver"),
    ("server", b"2" * MAX_LINE, "receiver"),
    ("server", b"250-x\r\n" * (MAX_LINE // 7 + 1), "receiver"),
    ("client", b"A" * MAX_LINE, "sender"),
], ids=["garbage-reply", "code-changes", "endless-reply-line", "endless-multiline",
        "endless-command"])
def test_protocol_errors_close_both_and_name_the_culprit(side: str, data: bytes,
                                                         culprit: str) -> None:
    r = relay()
    r.receive_server(GREETING)
    feed = r.receive_server if side == "server" else r.receive_client
    out: list[Command] = []
    for i in range(0, len(data), 4096):  # chunked, as a socket delivers it
        out += feed(data[i:i + 4096])
    assert isinstance(out[-1], CloseBoth) and out[-1].reason.startswith(culprit)
    assert r.mode == "closed" and feed(b"x" * 10) == []
    assert r.transcript[-1].kind == "event" and "protocol error" in r.transcript[-1].said


def test_held_bytes_are_bounded() -> None:
    r = after_ehlo()
    r.receive_client(b"DATA\r\n")
    out = r.receive_client(b"x\r\n" * (MAX_LINE // 3 + 1))
    assert out == [CloseBoth(out[0].reason)] and "sender" in out[0].reason  # type: ignore[union-attr]


def test_eof_forwards_the_unfinished_rest_raw() -> None:
    r = relay()
    r.receive_server(GREETING)
    r.receive_client(b"QUIT\r\n")
    assert r.receive_server(b"221-bye\r\n221 for") == []
    assert r.server_eof() == [SendToClient(b"221-bye\r\n221 for", raw=True),
                              CloseBoth("receiver closed the connection")]
    assert r.server_eof() == [] and r.client_eof() == []


def test_plaintext_kept_is_bounded_but_counted() -> None:
    r = after_ehlo()
    r.receive_server(EHLO_REPLIES["single"])
    r.receive_client(b"DATA\r\n")
    r.receive_server(b"354 go\r\n")
    line = b"x" * 998 + b"\r\n"
    for _ in range(MAX_PLAINTEXT // len(line) + 10):
        r.receive_client(line)
    assert len(r.client_plaintext) == MAX_PLAINTEXT
    assert r.client_bytes > MAX_PLAINTEXT


# ---- golden dialogue ----

def test_golden_strip_dialogue() -> None:
    r = relay("strip-starttls")
    r.receive_server(GREETING)
    r.receive_client(EHLO)
    r.receive_server(EHLO_REPLIES["middle"])
    r.receive_client(b"STARTTLS\r\n")
    r.receive_client(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    r.receive_server(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 end with .\r\n")
    r.receive_client(b"Subject: hi\r\n\r\ntoken\r\n.\r\nQUIT\r\n")
    r.receive_server(b"250 2.0.0 queued\r\n221 bye\r\n")
    r.server_eof()
    got = [e.to_json() for e in r.transcript]
    golden = json.loads((DATA_DIR / "strip-dialogue.json").read_text())
    assert got == golden
    assert json.loads(json.dumps(got)) == got


# ---- properties ----

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30)


@settings(database=None, deadline=None)
@given(st.integers(200, 599), st.lists(TEXT, min_size=1, max_size=8))
def test_any_reply_encodes_well_formed_and_round_trips(code: int, lines: list[str]) -> None:
    reply = Reply(code, tuple(lines))
    well_formed(reply.encode())
    assert Reply.parse(reply.encode().splitlines(True)) == reply


@settings(database=None, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=6))
def test_parse_of_anything_returns_or_raises_smtp_error(lines: list[bytes]) -> None:
    try:
        reply = Reply.parse(lines)
    except SmtpError:
        return
    well_formed(reply.encode())


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(database=None, deadline=None)
@given(kind=st.sampled_from(["strip-starttls", "corrupt-starttls", "reject-starttls", None]),
       caps=st.lists(st.one_of(st.sampled_from(["STARTTLS", "starttls", "PIPELINING", "SIZE 1"]),
                               TEXT), max_size=8),
       cuts=st.lists(st.integers(0, 400), max_size=10), lf=st.booleans())
def test_any_ehlo_reply_any_split_is_rewritten_well_formed(kind: str | None, caps: list[str],
                                                           cuts: list[int], lf: bool) -> None:
    raw = Reply(250, ("mx1.example.test", *caps)).encode()
    if lf:
        raw = raw.replace(b"\r\n", b"\n")
    r = after_ehlo(*([kind] if kind else []))
    out: list[Command] = []
    for chunk in _chunks(raw, cuts):
        out += r.receive_server(chunk)
    (reply,) = well_formed(to_client(out))
    heard = Reply.parse(reply)
    before = Reply.parse(raw.splitlines(True)).keywords
    if kind == "strip-starttls":
        assert heard.keywords == tuple(k for k in before if k != "STARTTLS")
    elif kind == "corrupt-starttls":
        assert heard.keywords == tuple("XXXXXXXA" if k == "STARTTLS" else k for k in before)
    else:
        assert to_client(out) == raw


@settings(database=None, deadline=None)
@given(kind=st.sampled_from([*PROXY_KINDS, None]), data=st.binary(max_size=300),
       cuts=st.lists(st.integers(0, 300), max_size=8), client=st.binary(max_size=60))
def test_any_bytes_never_raise_and_only_well_formed_replies_get_through(
        kind: str | None, data: bytes, cuts: list[int], client: bytes) -> None:
    r = after_ehlo(*([kind] if kind else []))
    out: list[Command] = []
    for chunk in _chunks(data, cuts):
        out += r.receive_server(chunk)
        if r.mode in ("passthrough", "closed"):
            break
        out += r.receive_client(client)
        if r.mode in ("passthrough", "closed"):
            break
    parsed = b"".join(c.data for c in out if isinstance(c, SendToClient) and not c.raw)
    well_formed(parsed)
