"""`reference`: the built-in RFC 8461 sender, the standard the matrix measures others against.

Before every delivery it looks up `_mta-sts.D` in the lab DNS and, as the cache decides
(`lab.policycache`), fetches the policy over HTTPS *before* delivering (so it never needs the
A-07 leniency). Then:

- `enforce`: only MX hosts whose own name matches the policy (M-02) are tried, in MX order
  (A-03), each with STARTTLS required and the certificate verified against the lab CA for the
  MX name (C-01). A host that fails gets no MAIL FROM (A-01); if none is left the message is
  deferred, never bounced (A-02).
- `testing`: verified TLS is tried first; when it fails the message is delivered anyway (A-04).
- `none`, no policy, an invalid policy (A-05), or `TLS-Required: No` (RFC 8689, A-06):
  opportunistic TLS, as most MTAs do.

Its cache lives as long as the sender (across the steps of a scenario). The clock is
`time.time()` plus an offset that `advance_clock` moves (capability `clock`).
"""

from __future__ import annotations

import time
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any

from ...core.names import name_key
from ...core.policy import Policy, PolicyError, validate_fetch
from ...core.policycache import PolicyCache, TxtFailure, discover
from ...errors import SenderError
from ..base import Message, SendReport, remaining
from ..env import LabEnv
from .dnsclient import DnsClient, DnsError, LookupFailed, NoRecords
from .policyfetch import Fetched, PolicyFetcher
from .smtpclient import Attempt, deliver_via_mx
from .tlsreporter import Applied, Reporter

if TYPE_CHECKING:
    from ...core.dane import HostPlan
    from .dnssecclient import ValidatingResolver

# F-06: how long the policy host may take to answer. RFC 8461 §3.3 fixes no figure (it suggests
# about a minute at most); the fetch happens before the first delivery, so it gets 40 % of the
# step's time (at most a minute, at least FETCH_MIN_S) and leaves the rest to deliver with no
# policy when it fails (F-07). Under the catalogue's 10 s steps that is 4 s, the default of
# postfix-mta-sts-resolver; `fetch/slow-5s` gives its honest 5 s host a 20 s step (8 s here).
FETCH_MAX_S = 60.0
FETCH_MIN_S = 3.0
FETCH_SHARE = 0.4
ATTEMPT_TIMEOUT_S = 10.0
DNS_LIFETIME_S = 2.0


def fetch_timeout(budget_s: float) -> float:
    """The policy fetch's time to answer, out of the `budget_s` the step leaves (F-06)."""
    return min(FETCH_MAX_S, max(FETCH_MIN_S, FETCH_SHARE * budget_s))


def tls_required_no(message: Message) -> bool:
    """RFC 8689 §5: the `TLS-Required: No` header field asks to ignore TLS policies (A-06)."""
    headers = BytesHeaderParser().parsebytes(message.data)
    return any(v.strip().lower() == "no" for v in headers.get_all("TLS-Required") or [])


class ReferenceSender:
    name = "reference"
    capabilities: frozenset[str] = frozenset({"mta-sts", "tls-rpt", "clock", "queue-state"})

    def __init__(self) -> None:
        self._env: LabEnv | None = None
        self._dns: DnsClient | None = None
        self._fetcher: PolicyFetcher | None = None
        self._dane: ValidatingResolver | None = None  # when the lab signs its zones
        self._cache = PolicyCache()
        self._offset = 0.0
        self._reporter = Reporter(time.time())  # RFC 8460 session results

    def _now(self) -> float:
        return time.time() + self._offset

    async def advance_clock(self, seconds: float) -> None:
        self._offset += seconds

    async def start(self, env: LabEnv) -> None:
        self._env = env
        self._dns = DnsClient(env, lifetime=DNS_LIFETIME_S)
        self._fetcher = PolicyFetcher(env, self._dns)
        if env.trust_anchor is not None:  # a signed lab: DANE (imported only then)
            from .dnssecclient import ValidatingResolver

            self._dane = ValidatingResolver(env)

    async def stop(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.close()
        self._env = self._dns = self._fetcher = None
        self._dane = None

    async def send(self, message: Message, deadline: float) -> SendReport:
        dns = self._dns  # kept: a stop() while this send waits (Ctrl-C, SIGTERM) clears it
        if self._env is None or dns is None:
            raise SenderError("reference: send() before start()")
        domain = name_key(message.rcpt_to.rpartition("@")[2])
        policy, notes = await self._policy(domain, fetch_timeout(remaining(deadline)))
        if policy is not None and tls_required_no(message):
            notes["ignored"] = "TLS-Required: No (RFC 8689)"
            policy = None
        elif self._dane is not None:
            return await self._send_dane(domain, policy, message, deadline, notes)
        try:
            hosts = await dns.mail_hosts(domain, lifetime=DNS_LIFETIME_S)
        except DnsError as exc:
            return SendReport("deferred", f"DNS: {exc}", {"policy": notes, "attempts": []})
        if not hosts:
            return SendReport("bounced", f"{domain} accepts no mail (null MX, RFC 7505)",
                              {"policy": notes, "attempts": []})
        applied = Applied.of(domain, policy)  # what the TLS report names (RFC 8460 §4.4)
        if policy is not None and policy.mode == "enforce":
            return await self._enforce(policy, applied, hosts, message, deadline, notes)
        return await self._deliver_anyway(policy, applied, hosts, message, deadline, notes)

    async def flush_reports(self) -> list[dict[str, Any]]:
        """Send the TLS reports (RFC 8460) of the sessions since the last flush; the lab calls
        this at the end of each step in place of the daily schedule."""
        if self._env is None or self._dns is None:
            raise SenderError("reference: flush_reports() before start()")
        return await self._reporter.flush(self._env, self._dns, self._now())

    async def _policy(self, domain: str, fetch_s: float) -> tuple[Policy | None, dict[str, Any]]:
        """The policy that applies now: RFC 8461 §3.1 discovery, §3.3 fetch, the cache's say."""
        assert self._dns is not None and self._fetcher is not None
        try:
            records: list[str] | None = await self._dns.resolve_txt(f"_mta-sts.{domain}")
        except NoRecords:
            records = []
        except LookupFailed:
            records = None  # D-09: a failed lookup is not the absence of a record
        txt = discover(records)
        now = self._now()
        decision = self._cache.decide(domain, txt, now)
        notes: dict[str, Any] = {
            "txt": txt.value if isinstance(txt, TxtFailure) else f"id={txt.id}",
            "decision": decision.action, "why": decision.why,
        }
        if decision.action != "fetch":
            return decision.policy, self._describe(decision.policy, notes)
        fetched: Policy | PolicyError
        try:
            answer: Fetched = await self._fetcher.fetch(domain, fetch_s)
            notes["fetch"] = answer.to_json()
            fetched = validate_fetch(answer.status, answer.content_type, answer.body)
        except PolicyError as exc:
            notes["fetch_error"] = {"detail": str(exc), "result_type": exc.result_type}
            self._reporter.fetch_failed(domain, exc.result_type, str(exc))
            fetched = exc
        policy = self._cache.settle(domain, decision, fetched, now)
        return policy, self._describe(policy, notes)

    @staticmethod
    def _describe(policy: Policy | None, notes: dict[str, Any]) -> dict[str, Any]:
        if policy is not None:
            notes["mode"] = policy.mode
            notes["mx"] = list(policy.mx)
            notes["max_age"] = policy.max_age
        else:
            notes["mode"] = None
        return notes

    async def _enforce(self, policy: Policy, applied: Applied, hosts: list[str],
                       message: Message, deadline: float, notes: dict[str, Any]) -> SendReport:
        assert self._env is not None
        skipped: list[str] = []
        attempts: list[Attempt] = []
        story: list[str] = []  # what happened at each MX, in MX order
        for host in hosts:
            if not policy.matches(host):
                # RFC 8461 §4.1 (M-02): the MX name itself must match; treat as unreachable.
                skipped.append(f"{host}: not in the policy's mx list")
                story.append(skipped[-1])
                self._reporter.skipped(applied, host)
                continue
            if remaining(deadline) <= 0:
                break
            attempt = await deliver_via_mx(self._env, host, message, tls="required", verify=True,
                                           timeout=min(ATTEMPT_TIMEOUT_S, remaining(deadline)))
            attempts.append(attempt)
            story.append(attempt.summary())
            self._reporter.attempt(applied, attempt)
            final = _final(attempt, self._extra(notes, attempts, skipped))
            if final is not None:
                return final
        # RFC 8461 §5: no MX validated; keep the message and retry later.
        why = "; ".join(story) or "deadline passed"
        return SendReport("deferred", f"enforce policy: no MX host validated: {why}",
                          self._extra(notes, attempts, skipped))

    async def _deliver_anyway(self, policy: Policy | None, applied: Applied, hosts: list[str],
                              message: Message, deadline: float, notes: dict[str, Any]
                              ) -> SendReport:
        """testing (A-04): try validated TLS, deliver regardless, and report (RFC 8460);
        none / no policy: as usual."""
        assert self._env is not None
        mode = policy.mode if policy is not None else "none"
        attempts: list[Attempt] = []
        for host in hosts:
            if remaining(deadline) <= 0:
                break
            first = len(attempts)
            attempt = await self._deliver_one(mode, host, message, deadline, attempts)
            # One session per MX: the validating try; fallbacks only deliver.
            mismatch = mode == "testing" and policy is not None and not policy.matches(host)
            self._reporter.attempt(applied, attempts[first], mismatch=mismatch)
            extra = self._extra(notes, attempts, [])
            if attempt.delivered:
                return SendReport("delivered", attempt.summary(), extra)
            if attempt.result == "perm-fail":
                return SendReport("bounced", attempt.summary(), extra)
        why = "; ".join(a.summary() for a in attempts) or "deadline passed"
        return SendReport("deferred", why, self._extra(notes, attempts, []))

    async def _deliver_one(self, mode: str, host: str, message: Message, deadline: float,
                           attempts: list[Attempt]) -> Attempt:
        assert self._env is not None

        def budget() -> float:
            return min(ATTEMPT_TIMEOUT_S, remaining(deadline))

        verify = mode == "testing"
        attempt = await deliver_via_mx(self._env, host, message, tls="opportunistic",
                                       verify=verify, timeout=budget())
        attempts.append(attempt)
        if attempt.result == "tls-failed" and budget() > 0:
            # The handshake or the certificate failed; without enforcement deliver anyway,
            # unverified TLS first, plaintext as the last resort.
            if verify:
                attempt = await deliver_via_mx(self._env, host, message, tls="opportunistic",
                                               verify=False, timeout=budget())
                attempts.append(attempt)
            if attempt.result == "tls-failed" and budget() > 0:
                attempt = await deliver_via_mx(self._env, host, message, tls="none",
                                               timeout=budget())
                attempts.append(attempt)
        return attempt

    async def _send_dane(self, domain: str, policy: Policy | None, message: Message,
                         deadline: float, notes: dict[str, Any]) -> SendReport:
        """RFC 7672 first, MTA-STS only for hosts DANE does not cover (RFC 8461 §2, X-01)."""
        assert self._dane is not None
        now = self._now()
        self._dane.reset()
        mx = await self._dane.lookup(domain, "MX", now)
        dane: dict[str, Any] = {"mx": mx.security, "hosts": []}
        notes["dane"] = dane
        if mx.failed:
            # RFC 7672 §2.2.1 (T-02): a bogus or failed MX lookup: keep the message, retry
            return SendReport("deferred", f"DNSSEC: MX lookup {mx.security}: {mx.why}",
                              {"policy": notes, "attempts": []})
        pairs = sorted((int(r.preference), name_key(r.exchange.to_text()))
                       for r in (mx.rrset or []))
        hosts = [h for _, h in pairs if h] if pairs else [domain]
        if pairs and not hosts:
            return SendReport("bounced", f"{domain} accepts no mail (null MX, RFC 7505)",
                              {"policy": notes, "attempts": []})
        applied = Applied.of(domain, policy)
        attempts: list[Attempt] = []
        story: list[str] = []
        for host in hosts:
            if remaining(deadline) <= 0:
                break
            plan = await self._plan(host, now)
            dane["hosts"].append({"host": host, "plan": plan.plan, "why": plan.why,
                                  "tlsa": [r.text() for r in plan.records]})
            if plan.plan == "unreachable":
                # RFC 7672 §2.2 (T-04): this host is not used; the next one may be
                story.append(f"{host}: {plan.why}")
                if "TLSA" in plan.why:  # RFC 8460 §4.3.2.1: the TLSA lookup did not validate
                    self._reporter.skipped_as(Applied(domain, "tlsa"), host, "dnssec-invalid",
                                              plan.why)
                continue
            attempt = await self._deliver_dane(plan, policy, applied, host, domain, message,
                                               deadline, now, attempts)
            if attempt is None:
                story.append(f"{host}: not in the policy's mx list")
                continue
            story.append(attempt.summary())
            final = _final(attempt, self._extra(notes, attempts, []))
            if final is not None:
                return final
        # RFC 7672 §2.2 (T-15): nothing delivered securely enough: a temporary failure
        why = "; ".join(story) or "deadline passed"
        return SendReport("deferred", f"no MX host usable: {why}",
                          self._extra(notes, attempts, []))

    async def _plan(self, host: str, now: float) -> HostPlan:
        from ...core.dane import HostPlan, Tlsa, plan_host  # DANE labs only, as dnssecclient

        assert self._dane is not None
        address = await self._dane.lookup(host, "A", now)
        if address.security != "secure":
            return plan_host(address.security, None)
        tlsa = await self._dane.lookup(f"_25._tcp.{host}", "TLSA", now)
        records = [Tlsa(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert))
                   for r in (tlsa.rrset or [])]
        plan = plan_host(address.security, tlsa.security, records)
        if tlsa.why and plan.plan == "unreachable":
            return HostPlan(plan.plan, f"{plan.why}: {tlsa.why}")
        return plan

    async def _deliver_dane(self, plan: HostPlan, policy: Policy | None, applied: Applied,
                            host: str, domain: str, message: Message, deadline: float,
                            now: float, attempts: list[Attempt]) -> Attempt | None:
        """One host under its DANE plan; None when MTA-STS rules the host out (M-02)."""
        from ...core.dane import authenticate

        assert self._env is not None
        timeout = min(ATTEMPT_TIMEOUT_S, remaining(deadline))
        if plan.plan in ("dane", "mandatory-tls"):
            # RFC 8461 §2: where DANE applies, MTA-STS is not consulted at all
            check = None
            if plan.plan == "dane":
                records, names = plan.records, [host, domain]  # §3.2.3 reference identifiers

                def check(chain: list[bytes]) -> str | None:
                    return authenticate(records, chain, names, now)
            attempt = await deliver_via_mx(self._env, host, message, tls="required",
                                           verify=False, timeout=timeout, authenticate=check)
            attempts.append(attempt)
            # RFC 8460 §4.4: DANE sessions are reported under policy type tlsa, the records
            # as the policy string
            self._reporter.attempt(Applied(domain, "tlsa", tuple(r.text() for r in plan.records)),
                                   attempt)
            return attempt
        if policy is not None and policy.mode == "enforce":
            if not policy.matches(host):
                self._reporter.skipped(applied, host)
                return None
            attempt = await deliver_via_mx(self._env, host, message, tls="required",
                                           verify=True, timeout=timeout)
            attempts.append(attempt)
            self._reporter.attempt(applied, attempt)
            return attempt
        mode = policy.mode if policy is not None else "none"
        first = len(attempts)
        attempt = await self._deliver_one(mode, host, message, deadline, attempts)
        mismatch = mode == "testing" and policy is not None and not policy.matches(host)
        self._reporter.attempt(applied, attempts[first], mismatch=mismatch)
        return attempt

    @staticmethod
    def _extra(notes: dict[str, Any], attempts: list[Attempt], skipped: list[str]
               ) -> dict[str, Any]:
        extra: dict[str, Any] = {"policy": notes, "attempts": [a.to_json() for a in attempts]}
        if skipped:
            extra["skipped"] = skipped
        return extra


def _final(attempt: Attempt, extra: dict[str, Any]) -> SendReport | None:
    """The report an attempt ends the delivery with: delivered, or bounced when a validated MX
    refused the message itself (that is the recipient's answer); None: try the next host."""
    if attempt.delivered:
        return SendReport("delivered", attempt.summary(), extra)
    if attempt.result == "perm-fail" and attempt.verified:
        return SendReport("bounced", attempt.summary(), extra)
    return None
