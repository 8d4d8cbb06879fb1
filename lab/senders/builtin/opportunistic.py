"""`opportunistic`: the vulnerable default of most MTAs (DESIGN §5), built in.

It knows nothing of MTA-STS: it looks up the MX hosts in the lab's DNS (falling back to the
domain's own address when there is no MX, RFC 5321 §5.1), tries them in preference order,
uses STARTTLS when it is offered, trusts whatever certificate it is shown and otherwise sends
in plaintext. A handshake that fails is retried once on that host in plaintext, as Postfix
does at security level `may`. So every downgrade attack in the catalogue succeeds against it:
it is the baseline the matrix shows the reference sender beating.
"""

from __future__ import annotations

import msgspec

from ...core.names import name_key
from ...errors import SenderError
from ..base import Message, SendReport, remaining
from ..env import LabEnv
from .dnsclient import DnsClient, DnsError
from .smtpclient import Attempt, deliver_via_mx

ATTEMPT_TIMEOUT_S = 10.0  # one MX host's share of the deadline, at most


class OpportunisticSender:
    """STARTTLS when offered, no certificate checks, plaintext otherwise."""

    name = "opportunistic"
    capabilities: frozenset[str] = frozenset()  # no mta-sts, no tls-rpt

    def __init__(self) -> None:
        self._env: LabEnv | None = None
        self._dns: DnsClient | None = None

    async def start(self, env: LabEnv) -> None:
        self._env = env
        self._dns = DnsClient(env)

    async def stop(self) -> None:
        self._env = None
        self._dns = None

    async def send(self, message: Message, deadline: float) -> SendReport:
        """Deliver `message` before `deadline` (a `time.monotonic()` value), one pass over the
        MX hosts: `delivered`, `bounced` on a 5xx, otherwise `deferred`."""
        if self._env is None or self._dns is None:
            raise SenderError("opportunistic: send() before start()")
        env = self._env
        domain = name_key(message.rcpt_to.rpartition("@")[2])
        try:
            hosts = await self._mx_hosts(domain, deadline)
        except DnsError as exc:
            # No MX and no address, or DNS failed: keep the message, as a queue would.
            return SendReport("deferred", f"DNS: {exc}", {"attempts": []})
        if not hosts:
            return SendReport("bounced", f"{domain} accepts no mail (null MX, RFC 7505)",
                              {"attempts": []})
        attempts: list[Attempt] = []
        for host in hosts:
            if remaining(deadline) <= 0:
                break
            attempt = await self._try(env, host, message, deadline)
            attempts.append(attempt)
            extra = {"attempts": [a.to_json() for a in attempts]}
            if attempt.delivered:
                return SendReport("delivered", attempt.summary(), extra)
            if attempt.result == "perm-fail":
                return SendReport("bounced", attempt.summary(), extra)
        extra = {"attempts": [a.to_json() for a in attempts]}
        tried = "; ".join(a.summary() for a in attempts) or "deadline passed before any attempt"
        return SendReport("deferred", tried, extra)

    async def _mx_hosts(self, domain: str, deadline: float) -> list[str]:
        assert self._dns is not None
        return await self._dns.mail_hosts(domain, lifetime=min(remaining(deadline), 5.0) or 0.001)

    async def _try(self, env: LabEnv, host: str, message: Message, deadline: float) -> Attempt:
        def budget() -> float:
            return min(ATTEMPT_TIMEOUT_S, remaining(deadline))

        attempt = await deliver_via_mx(env, host, message, tls="opportunistic", verify=False,
                                       timeout=budget())
        if attempt.result == "tls-failed" and budget() > 0:
            # The vulnerable fallback: a broken handshake is retried in the clear.
            retry = await deliver_via_mx(env, host, message, tls="none", timeout=budget())
            detail = f"{attempt.detail}; retried in plaintext: {retry.detail}"
            return msgspec.structs.replace(retry, detail=detail)
        return attempt

