"""The sender adapters the lab knows, and whether each can run here (`downgrade-lab senders`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SenderError
from .base import Sender


@dataclass(frozen=True)
class SenderInfo:
    name: str
    target: str  # "module:Class"
    summary: str
    builtin: bool = True  # runs in-process on loopback; real MTAs need --isolate

    def factory(self) -> Callable[[], Sender]:
        module, _, cls = self.target.partition(":")
        factory: Callable[[], Sender] = getattr(importlib.import_module(module, __package__), cls)
        return factory

    def available(self) -> tuple[bool, str]:
        """(can run here, why not). Adapters may define `available()` on their class."""
        try:
            factory = self.factory()
        except (ImportError, AttributeError) as exc:
            return False, f"adapter not importable: {exc}"
        check = getattr(factory, "available", None)
        if check is None:
            return True, ""
        ok, why = check()
        return bool(ok), str(why)


# The order here is the column order of the matrix. Invariant: names are unique.
SENDERS: dict[str, SenderInfo] = {
    info.name: info
    for info in (
        SenderInfo("reference", ".builtin.reference:ReferenceSender",
                   "RFC 8461 + RFC 8460 sender: the standard the matrix measures against"),
        SenderInfo("opportunistic", ".builtin.opportunistic:OpportunisticSender",
                   "STARTTLS when offered, no certificate checks: the vulnerable default"),
        # Real MTAs (issue 4): they run only with --isolate, in a private network namespace.
        SenderInfo("postfix", ".real.postfix:PostfixSender",
                   "Postfix, smtp_tls_security_level = may (no MTA-STS)", builtin=False),
        SenderInfo("postfix-mta-sts", ".real.postfix:PostfixMtaStsSender",
                   "Postfix + postfix-mta-sts-resolver (strict_testing off)", builtin=False),
        SenderInfo("postfix-mta-sts-strict", ".real.postfix:PostfixMtaStsStrictSender",
                   "Postfix + postfix-mta-sts-resolver, strict_testing on", builtin=False),
        SenderInfo("postfix-dane", ".real.postfix:PostfixDaneSender",
                   "Postfix with DANE (dnssec lookups through unbound, security level dane)",
                   builtin=False),
        SenderInfo("exim", ".real.exim:EximSender",
                   "Exim 4, default opportunistic TLS (no MTA-STS)", builtin=False),
        SenderInfo("exim-dane", ".real.exim:EximDaneSender",
                   "Exim 4 with DANE (dnssec_request_domains, hosts_try_dane) through unbound",
                   builtin=False),
        SenderInfo("mailauth", ".real.mailauth:MailauthSender",
                   "Node mx-connect + mailauth + nodemailer (ZoneMTA's MTA-STS path)",
                   builtin=False),
        SenderInfo("command", ".real.command:CommandSender",
                   "any program, from the template in DOWNGRADE_LAB_COMMAND", builtin=False),
    )
}


def builtin_senders() -> list[str]:
    return [name for name, info in SENDERS.items() if info.builtin and info.available()[0]]


def make_sender(name: str) -> Sender:
    info = SENDERS.get(name)
    if info is None:
        raise SenderError(f"unknown sender {name!r} (known: {', '.join(SENDERS)})")
    ok, why = info.available()
    if not ok:
        raise SenderError(f"sender {name!r} cannot run here: {why}")
    return info.factory()()
