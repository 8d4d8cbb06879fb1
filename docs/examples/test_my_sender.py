"""Hand-written checks of a sender against a running lab (docs/ci.md).

The reference sender stands in for yours: any object with `start(env)`, `send(message,
deadline)` and `stop()` (downgrade_lab/senders/base.py) will do. Needs pytest-asyncio
(`pip install 'downgrade-lab[pytest]'`); the mark below makes it run in its default strict mode.
"""

import pytest

from downgrade_lab.senders.builtin.reference import ReferenceSender

pytestmark = pytest.mark.asyncio  # every test here is a coroutine

STRIPPED_ENFORCE = """
title = "STARTTLS stripped, enforce policy, first contact"
[policy]
mode = "enforce"

[[step]]
attack = ["strip-starttls"]
expect = "not-delivered"
"""


@pytest.fixture
def lab_scenario():
    # The world the `lab` fixture builds for every test in this module.
    return STRIPPED_ENFORCE


async def test_refuses_a_stripped_mx(lab):
    sender = ReferenceSender()
    await sender.start(lab.env)  # lab.env: DNS address, CA bundle, port map
    try:
        step = await lab.run_step(sender)
    finally:
        await sender.stop()
    assert step.verdict == "PASS", step.reason
    assert step.outcome == "not-delivered"
    assert not step.record["attacker_saw_mail_from"]
    assert step.record["sender_report"]["state"] == "deferred"


async def test_delivers_over_tls_on_an_honest_path(make_lab):
    async with make_lab("""
        title = "healthy domain, enforce policy"
        [policy]
        mode = "enforce"
        [[step]]
        expect = "delivered-tls"
    """) as lab:
        sender = ReferenceSender()
        await sender.start(lab.env)
        try:
            step = await lab.run_step(sender)
        finally:
            await sender.stop()
    assert step.outcome == "delivered-tls"
    (stored,) = step.record["received"]
    assert stored["tls_version"].startswith("TLSv1.")
