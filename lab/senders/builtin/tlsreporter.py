"""TLS reporting (RFC 8460) for the reference sender: what it counts and how it sends.

`Reporter` keeps one `Session` per TLS negotiation with an MX (and one per failed policy fetch),
grouped by policy domain. `flush()` stands in for RFC 8460 §4.1's daily schedule: for every
domain with sessions it looks up `_smtp._tls.D` in the lab DNS (R-01), builds the §4.4 report
and sends it to every usable `rua`:
- `https:` — POST as application/tlsrpt+gzip (§5.4, R-05), the certificate verified against
  the lab CA for the URL's host, SNI included;
- `mailto:` — a DKIM-signed multipart/report (§5.3) through the mailbox domain's MX hosts,
  with opportunistic TLS and, if the handshake fails, in plaintext: MTA-STS is not applied to
  the report itself (R-03), and the report's own session is never counted.
"""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import aiohttp
from msgspec import Struct

from ...core.policy import Policy, serialise_policy
from ...core.tlsrpt import (
    MEDIA_GZIP,
    Session,
    TlsRptError,
    build_report,
    parse_tlsrpt_records,
    report_filename,
)
from ...core.tlsrptmail import compose_mail
from ..base import Message
from ..env import LabEnv
from .dnsclient import DnsClient, DnsError
from .policyfetch import LabResolver
from .smtpclient import Attempt, client_context, deliver_via_mx

SUBMITTER = "sender.test"  # the reporting domain: TLS-Report-Submitter and DKIM d=
REPORT_FROM = f"tlsrpt-noreply@{SUBMITTER}"
ORGANIZATION = "Downgrade Lab reference sender"
CONTACT = f"tlsrpt@{SUBMITTER}"
DKIM_SELECTOR = "tlsrpt"
SENDING_IP = "127.0.0.1"  # the lab is on loopback
POST_TIMEOUT_S = 3.0
MAIL_TIMEOUT_S = 3.0
USER_AGENT = "downgrade-lab-reference/0.1 (TLS-RPT)"


class Applied(Struct, frozen=True):
    """The policy a delivery to `domain` went under, as a report names it (RFC 8460 §4.4)."""

    domain: str
    policy_type: str  # sts | tlsa | no-policy-found
    policy_string: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()

    @classmethod
    def of(cls, domain: str, policy: Policy | None) -> Applied:
        # A `none` policy validates nothing: its sessions are reported as without a policy.
        if policy is None or policy.mode == "none":
            return cls(domain, "no-policy-found")
        return cls(domain, "sts", tuple(serialise_policy(policy).splitlines()), policy.mx)


class Reporter:
    """Session results since the last flush, and their delivery as RFC 8460 reports."""

    def __init__(self, now: float) -> None:
        self._sessions: list[Session] = []
        self._since = now

    def attempt(self, applied: Applied, attempt: Attempt, *, mismatch: bool = False) -> None:
        """Count one SMTP attempt as a session (RFC 8460 §4.1); a connection that never
        reached the server is no TLS session. `mismatch`: the MX is not in the policy."""
        if attempt.result == "connect-failed":
            return
        result, reason = attempt.failure, attempt.detail or None
        if mismatch:  # RFC 8461 §4.1 (M-02): the MX host itself failed validation
            result, reason = "validation-failure", "MX host not in the policy's mx list"
        elif result is None and not attempt.tls:  # plaintext: STARTTLS missing or refused
            result = "starttls-not-supported"
            reason = attempt.detail if attempt.starttls_offered else "STARTTLS not offered"
        elif result is None:
            reason = None
        self._add(applied, result, attempt.mx, reason, attempt.ip)

    def skipped(self, applied: Applied, host: str) -> None:
        """An MX host not tried because it is not in the policy (RFC 8461 §4.1, M-02)."""
        self._add(applied, "validation-failure", host, "MX host not in the policy's mx list")

    def skipped_as(self, applied: Applied, host: str, result: str, reason: str) -> None:
        """An MX host not tried for a reason of its own (DANE: `dnssec-invalid`)."""
        self._add(applied, result, host, reason)

    def fetch_failed(self, domain: str, result_type: str | None, detail: str) -> None:
        """A failed policy fetch with a valid TXT record (R-02): sts-policy-fetch-error,
        sts-policy-invalid or sts-webpki-invalid."""
        if result_type is not None:
            self._sessions.append(Session(domain, "sts", result_type, sending_mta_ip=SENDING_IP,
                                          failure_reason_code=detail))

    def _add(self, applied: Applied, result: str | None, mx: str, reason: str | None,
             ip: str | None = None) -> None:
        failed = result is not None
        self._sessions.append(Session(
            applied.domain, applied.policy_type, result, applied.policy_string, applied.mx_host,
            sending_mta_ip=SENDING_IP if failed else None,
            receiving_mx_hostname=mx if failed else None,
            receiving_ip=ip if failed else None,  # the MX's own address (127.0.1.N isolated)
            failure_reason_code=reason if failed else None))

    async def flush(self, env: LabEnv, dns: DnsClient, now: float) -> list[dict[str, Any]]:
        """Send one report per policy domain over the rua of its `_smtp._tls` record; what
        happened to each, for the sender's own log."""
        sessions, self._sessions = self._sessions, []
        start, self._since = self._since, now
        domains: dict[str, list[Session]] = {}
        for s in sessions:
            domains.setdefault(s.policy_domain, []).append(s)
        log: list[dict[str, Any]] = []
        for domain, items in domains.items():
            try:
                # RFC 8460 §3: exactly one v=TLSRPTv1 record, strings joined
                record = parse_tlsrpt_records(await dns.resolve_txt(f"_smtp._tls.{domain}"))
            except (DnsError, TlsRptError) as exc:
                log.append({"domain": domain, "sent": False, "why": f"no reporting: {exc}"})
                continue
            report_id = f"{int(now)}.{uuid.uuid4().hex[:16]}@{SUBMITTER}"
            doc = build_report(items, organization_name=ORGANIZATION, contact_info=CONTACT,
                               report_id=report_id, start=start, end=now)
            body = gzip.compress(json.dumps(doc).encode())  # RFC 8460 §5.2
            for url in record.https:
                log.append(await _post(env, dns, url, body))
            for box in record.mailto:
                name = report_filename(SUBMITTER, domain, start, now, report_id.partition("@")[0])
                mail = compose_mail(body, policy_domain=domain, submitter=SUBMITTER,
                                    mail_from=REPORT_FROM, rcpt_to=box, report_id=report_id,
                                    filename=name, now=now)
                from ...core import dkim  # dkimpy and PyNaCl: only when a report is mailed

                # the lab's stand-in for SUBMITTER's DNS: the collector verifies against it
                dkim.publish(SUBMITTER, DKIM_SELECTOR, dkim.lab_public_key())
                signed = dkim.sign(mail, domain=SUBMITTER, selector=DKIM_SELECTOR)
                log.append(await _mail(env, dns, box, signed, report_id))
        return log


async def _post(env: LabEnv, dns: DnsClient, url: str, body: bytes) -> dict[str, Any]:
    """RFC 8460 §5.4: POST the gzipped report; 2xx is success."""
    connector = aiohttp.TCPConnector(resolver=LabResolver(env, dns),
                                     ssl=client_context(env, verify=True), force_close=True,
                                     use_dns_cache=False)
    entry: dict[str, Any] = {"rua": url, "sent": False}
    try:
        async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                         timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S)
                                         ) as session, \
                session.post(url, data=body, allow_redirects=False,
                             headers={"Content-Type": MEDIA_GZIP, "User-Agent": USER_AGENT}) as resp:
            entry |= {"status": resp.status, "sent": 200 <= resp.status < 300}
    except TimeoutError:
        entry["why"] = f"no answer within {POST_TIMEOUT_S:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        entry["why"] = f"POST failed: {exc!r}"
    return entry


async def _mail(env: LabEnv, dns: DnsClient, box: str, data: bytes,
                report_id: str) -> dict[str, Any]:
    """RFC 8460 §5.3: deliver through the mailbox domain's MX hosts, TLS failures or not (R-03)."""
    entry: dict[str, Any] = {"rua": f"mailto:{box}", "sent": False}
    domain = box.rpartition("@")[2]
    try:
        hosts = await dns.mail_hosts(domain)
    except DnsError as exc:
        entry["why"] = f"no MX for {domain}: {exc}"
        return entry
    message = Message(token=report_id, mail_from=REPORT_FROM, rcpt_to=box, data=data)
    tried = []
    for host in hosts:
        attempt = await deliver_via_mx(env, host, message, tls="opportunistic", verify=False,
                                       timeout=MAIL_TIMEOUT_S)
        if attempt.result == "tls-failed":  # a TLS failure must not stop the report
            attempt = await deliver_via_mx(env, host, message, tls="none", timeout=MAIL_TIMEOUT_S)
        tried.append(attempt.summary())
        if attempt.delivered:
            return entry | {"sent": True, "via": attempt.summary(), "tls": attempt.tls}
    entry["why"] = "; ".join(tried) or "no MX host"
    return entry
