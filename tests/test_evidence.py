"""Evidence once (lab/core/evidence.py): what the services recorded -> what a step is judged
on, by the same rule for `run` (a token) and `up` (no token). Each success has its failure
beside it. Pure: no sockets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from downgrade_lab.core.evidence import gather, read_body, split
from downgrade_lab.core.verdict import Stored, outcome

TOKEN = "DGLTOKEN" + "ab" * 16
OTHER = "DGLTOKEN" + "cd" * 16


@dataclass(frozen=True)
class Copy:
    data: bytes
    tls: bool


@dataclass(frozen=True)
class Line:
    kind: str


@dataclass(frozen=True)
class Crossing:
    saw_mail_from: bool
    client_plaintext: bytes
    transcript: tuple[Line, ...]


def body(token: str = TOKEN) -> bytes:
    return f"Subject: probe {token}\r\n\r\nthe secret token is {token}\r\n".encode()


# A connection where the attacker read the whole dialogue (stripped STARTTLS): MAIL FROM and
# the DATA payload; one where STARTTLS went end to end (it read only EHLO and STARTTLS).
READ_ALL = Crossing(True, b"EHLO s\r\nMAIL FROM:<a@s>\r\nDATA\r\n" + body(),
                    (Line("command"), Line("command"), Line("data")))
END_TO_END = Crossing(False, b"EHLO s\r\nSTARTTLS\r\n", (Line("command"), Line("event")))
# Bytes that carry the token but were never parsed as a message body: no evidence of a read
# body (the relay logs `data` only for a DATA payload it could read).
NO_DATA = Crossing(False, b"EHLO s\r\n" + body(), (Line("command"),))
OTHER_BODY = Crossing(True, b"MAIL FROM:<a@s>\r\nDATA\r\n" + body(OTHER), (Line("data"),))


@pytest.mark.parametrize(("connection", "token", "read"), [
    (READ_ALL, TOKEN, True), (END_TO_END, TOKEN, False),
    (READ_ALL, None, True), (END_TO_END, None, False),  # up: any readable body counts
    (OTHER_BODY, None, True), (OTHER_BODY, TOKEN, False),  # another message's body
    (NO_DATA, TOKEN, False), (NO_DATA, None, False),
], ids=["read-token", "e2e-token", "read-up", "e2e-up", "other-up", "other-token",
        "nodata-token", "nodata-up"])
def test_read_body(connection: Crossing, token: str | None, read: bool) -> None:
    assert read_body(connection, token) is read


@pytest.mark.parametrize(("stored", "token", "mine", "others"), [
    ([Copy(body(), True)], TOKEN, 1, 0),
    ([Copy(body(OTHER), True)], TOKEN, 0, 1),
    ([Copy(body(OTHER), True), Copy(body(), False)], None, 2, 0),  # up: every message
    ([], None, 0, 0),
], ids=["probe", "other-mail", "up-all", "nothing"])
def test_split(stored: list[Copy], token: str | None, mine: int, others: int) -> None:
    got = split(stored, token)
    assert (len(got[0]), len(got[1])) == (mine, others)


@pytest.mark.parametrize(("stored", "connections", "token", "expected"), [
    ([Copy(body(), True)], [END_TO_END], TOKEN, "delivered-tls"),
    ([Copy(body(), True)], [READ_ALL], TOKEN, "delivered-plaintext"),  # TLS, but read (intercept)
    ([Copy(body(), False)], [END_TO_END], TOKEN, "delivered-plaintext"),
    ([Copy(body(OTHER), True)], [END_TO_END], TOKEN, "not-delivered"),  # not the probe
    ([], [READ_ALL], TOKEN, "not-delivered"),
    ([Copy(body(), True)], [END_TO_END], None, "delivered-tls"),
    ([Copy(body(), True)], [END_TO_END, OTHER_BODY], None, "delivered-plaintext"),
    ([], [], None, "not-delivered"),
], ids=["tls", "tls-read", "plaintext", "other-only", "refused", "up-tls", "up-read",
        "up-nothing"])
def test_gather_gives_the_outcome(stored: list[Copy], connections: list[Crossing],
                                  token: str | None, expected: str) -> None:
    assert outcome(gather(stored, connections, token=token)) == expected


@pytest.mark.parametrize(("connections", "saw"), [
    ([READ_ALL], True), ([END_TO_END], False), ([END_TO_END, OTHER_BODY], True), ([], False),
], ids=["read", "e2e", "any-connection", "none"])
def test_gather_mail_from(connections: list[Crossing], saw: bool) -> None:
    assert gather([], connections, token=TOKEN).attacker_saw_mail_from is saw


def test_gather_keeps_the_senders_word_and_the_lab_error() -> None:
    ev = gather([Copy(body(), False)], [READ_ALL], token=TOKEN, sender_state="delivered",
                sender_detail="250 OK", lab_error="dns: boom")
    assert ev.stored == (Stored(tls=False),)
    assert (ev.sender_state, ev.sender_detail, ev.lab_error) == ("delivered", "250 OK", "dns: boom")
    assert gather([], []).sender_state is None and gather([], []).lab_error is None
