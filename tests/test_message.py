"""The probe message (senders/base.py): written directly where the email package would write
the same bytes, through the email package where it must encode or fold."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage

import pytest

from downgrade_lab.senders import base
from downgrade_lab.senders.base import Message

BODY = "Confidential: the secret token is DGLTOKEN0.\n"


def by_email_package(fields: tuple[tuple[str, str], ...]) -> bytes:
    msg = EmailMessage()
    for name, value in fields:
        msg[name] = value
    msg.set_content(BODY)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.mark.parametrize("fields", [
    (("From", "alice@sender.test"), ("To", "bob@example.test"), ("Subject", "probe")),
    (("From", "a@b.test"), ("TLS-Required", "No")),
    (("From", "a@b.test"), ("X-Empty", "")),
    (("Subject", "déjà vu"),),  # non-ASCII: RFC 2047 encoded by the email package
    (("Subject", "long " * 30),),  # folded by the email package
    (("Subject", "tab\there"),),
])
def test_same_bytes_as_the_email_package(fields: tuple[tuple[str, str], ...]) -> None:
    assert base._compose(fields, BODY) == by_email_package(fields)


def test_a_probe_carries_its_token_and_headers() -> None:
    m = Message.make("bob@example.test", (("TLS-Required", "No"),))
    parsed = message_from_bytes(m.data)
    assert parsed["To"] == "bob@example.test" and parsed["TLS-Required"] == "No"
    assert m.token in parsed["Subject"] and m.token in parsed.get_payload()
    assert b"\r\n\r\n" in m.data and b"\n" not in m.data.replace(b"\r\n", b"")
    assert Message.make("bob@example.test").token != m.token
