"""Shared by the report tests: a small real run, and a run record with hostile text in every
field an attacker or a scenario author controls."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.harness.runner import run_all

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
# a plain strip (single step) and a warm-cache enforce strip (honest step, then the attack)
REAL_SCENARIOS = ("strip/no-policy", "strip/starttls-enforce-warm")
REAL_SENDERS = ("opportunistic", "reference")


def real_record(*, capture: bool = False) -> dict[str, Any]:
    """The two scenarios against both built-in senders, through the real lab."""
    scenarios = [load_scenario(SCENARIOS / f"{sid}.toml", sid) for sid in REAL_SCENARIOS]
    return asyncio.run(run_all(scenarios, list(REAL_SENDERS), capture=capture)).as_json()


def index_of(record: dict[str, Any], scenario: str, sender: str) -> int:
    (i,) = [i for i, r in enumerate(record["results"])
            if r["scenario"] == scenario and r["sender"] == sender]
    return i


SCRIPT = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(2)>'
EVIL = f"{SCRIPT}{ATTR}&amp;\x1b[31m"


def _entry(kind: str, direction: str, said: str, heard: str | None, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "direction": direction, "said": said, "heard": heard,
            "changed": extra.pop("changed", heard != said), "origin": extra.pop("origin", "sender"),
            "attack": extra.pop("attack", None), "tls": extra.pop("tls", False),
            "mx": "mx1.example.test", "connection": 0, **extra}


STEP: dict[str, Any] = {
    "attack": ["strip-starttls", {"kind": "intercept-tls", "cert": EVIL}],
    "expect": "not-delivered", "outcome": "delivered-plaintext", "verdict": "FAIL",
    "reason": EVIL, "because": EVIL, "tolerate": [EVIL],
    "attacker_saw_mail_from": True, "attacker_saw_body": True, "token": "DGLTOKENx",
    "sender_report": {"state": "delivered", "detail": EVIL, "policy": {"mode": EVIL},
                      "attempts": [{"mx": EVIL, "result": EVIL}]},
    "received": [{"mx": EVIL, "mail_from": EVIL, "rcpt_tos": [EVIL], "data": EVIL, "size": 1,
                  "tls": True, "tls_version": EVIL, "cipher": EVIL, "sni": EVIL,
                  "time": 100.2, "queue_id": EVIL}],
    "other_mail": [],
    "dns_queries": [{"time": 100.0, "transport": "udp", "qname": EVIL, "qtype": "MX",
                     "rcode": "NOERROR", "answers": [EVIL], "note": EVIL, "client": "x"}],
    "policy_fetches": [{"time": 100.05, "sni": EVIL, "method": "GET", "path": EVIL, "status": 200,
                        "host": EVIL, "user_agent": EVIL, "blocked": ""}],
    "connections": [{"mx": EVIL, "started": 100.1, "attacks": [EVIL], "saw_mail_from": True,
                     "passthrough_to_receiver": 0, "passthrough_to_sender": 0, "error": EVIL,
                     "live": False, "continued": False, "attacker_read": EVIL + " DGLTOKENx",
                     "attacker_read_bytes": 99}],
    "transcript": [
        _entry("reply", "receiver->sender", f"250-{EVIL}\n250-STARTTLS\n250 HELP",
               f"250-{EVIL}\n250 HELP", origin="receiver", attack="strip-starttls"),
        _entry("command", "sender->receiver", f"MAIL FROM:<{EVIL}>", f"MAIL FROM:<{EVIL}>"),
        _entry("command", "sender->receiver", "STARTTLS", None, attack=EVIL),
        _entry("reply", "receiver->sender", f"502 {EVIL}", f"502 {EVIL}", origin="attacker",
               attack=EVIL),
        _entry("event", "", EVIL, None, origin="proxy"),
        _entry("event", "", "tls-intercepted", None, origin="attacker", attack="intercept-tls"),
        _entry("data", "sender->receiver", EVIL, EVIL, tls=True),
    ],
    "tlsrpt_reports": [{"channel": EVIL, "valid": False, "time": 100.3, "problems": [EVIL],
                        "report": {"organization-name": EVIL}}],
    "report_check": {"verdict": EVIL, "reason": EVIL},
    "report_flush": EVIL,
}

RESULT: dict[str, Any] = {
    "scenario": EVIL, "sender": EVIL, "verdict": "FAIL", "reason": EVIL, "title": EVIL,
    "rfc": [EVIL], "tags": [EVIL], "file": EVIL, "duration_s": 0.1, "steps": [STEP],
}


def hostile_record(**changes: Any) -> dict[str, Any]:
    """A run record whose every free-text field holds markup; `changes` override result keys."""
    result = {**copy.deepcopy(RESULT), **changes}
    return {"results": [result], "summary": {"PASS": 0, "WEAK": 0, "FAIL": 1, "SKIP": 0, "ERROR": 0},
            "duration_s": 0.1}
