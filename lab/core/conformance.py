"""The requirement ids of CONFORMANCE.md (RFC 8461 / RFC 8460), for `downgrade-lab coverage`.

A copy of the ids with one-line titles lives here so the coverage page can be built from a clone
alone. `NOT_OBSERVABLE` gives, for each id no scenario can show from a sender's behaviour in
this lab, the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

REQUIREMENTS: dict[str, str] = {
    "D-01": "records not starting with v=STSv1; are discarded; one valid record left is used",
    "D-02": "more than one v=STSv1 record: no policy and no HTTPS fetch",
    "D-03": "the record begins with v=STSv1 exactly (case-sensitive)",
    "D-04": "id is 1 to 32 letters or digits",
    "D-05": "fields separated by *WSP ; *WSP, trailing ; optional, unknown fields ignored",
    "D-06": "for a repeated field only the first counts",
    "D-07": "a TXT record split in several strings is joined with no spaces",
    "D-08": "a CNAME (chain) at _mta-sts.D is followed; the policy still comes from mta-sts.D",
    "D-09": "TXT absent/invalid/NXDOMAIN/SERVFAIL with a cached policy: keep the cached policy",
    "D-10": "no lookup in parent domains",
    "F-01": "GET https://mta-sts.D/.well-known/mta-sts.txt, never plain HTTP",
    "F-02": "the policy host's certificate must chain, be in date and match mta-sts.D",
    "F-03": "only 200 is a policy; redirects are not followed; 404/5xx/204 are failures",
    "F-04": "no HTTP caching revives an old policy",
    "F-05": "media type text/plain (charset allowed); text/html is rejected",
    "F-06": "timeout and size cap: trickling, endless or oversized bodies are failures",
    "F-07": "valid TXT, failed fetch, nothing cached: deliver as with no policy",
    "F-08": "nothing live but a non-expired cached policy: apply the cached policy",
    "F-09": "after a failed fetch, wait at least 5 minutes before fetching that id again",
    "F-10": "SNI mta-sts.D on the fetch, SNI = MX host name on the SMTP handshake",
    "P-01": "LF and CRLF both accepted, final terminator optional, *WSP after the colon",
    "P-02": "version, mode and max_age exactly once, at least one mx unless mode none",
    "P-03": "unknown keys are ignored",
    "P-04": "a repeated non-mx key: the first counts",
    "P-05": "an unknown mode value is invalid",
    "P-06": "max_age above 31557600: recorded, not graded",
    "P-07": "an HTML page or other garbage with status 200 is not a policy",
    "M-01": "* matches exactly one left-most label, case-insensitive, trailing dot ignored",
    "M-02": "the MX host name itself must match a pattern",
    "C-01": "STARTTLS succeeds with a certificate in date, trusted, and matching the MX name",
    "A-01": "enforce: on any TLS failure no MAIL FROM and no body reaches that host",
    "A-02": "enforce failures are temporary (deferred), never a bounce",
    "A-03": "MX hosts in order; a failing one counts as unreachable; a valid backup gets the mail",
    "A-04": "testing: deliver anyway and report; none: as with no policy",
    "A-05": "an invalid policy is never treated as enforce",
    "A-06": "TLS-Required: No lets a sender ignore the policy (RFC 8689, optional)",
    "A-07": "the first fetch may be asynchronous: a cold sender may deliver first (WEAK)",
    "K-01": "same id: no new fetch; new id: fetch and replace before max_age ends",
    "K-02": "cached for up to max_age; after that a failed fetch means no policy",
    "K-03": "refresh before expiry; a cache that survives restarts is better",
    "K-04": "a policy applies to its own domain only",
    "X-01": "DANE failures are not overridden by MTA-STS",
    "X-02": "TLS 1.2 or newer",
    "R-01": "_smtp._tls.D: exactly one v=TLSRPTv1 record, strings joined, rua mailto: or https:",
    "R-02": "report fetch failures, missing STARTTLS and certificate failures",
    "R-03": "mailed reports are DKIM-signed and delivered even when TLS fails",
    "R-04": "report JSON fields and result types",
    "R-05": "HTTPS reports as application/tlsrpt+gzip or +json; mailed as multipart/report",
}

# Ids that no scenario in this lab can show from what a sender does, and why.
NOT_OBSERVABLE: dict[str, str] = {
    "D-10": "a scenario serves DNS records and a policy host for its recipient domain only, so a "
            "parent-domain lookup finds nothing to act on and cannot change the outcome; the "
            "run record's DNS log still shows such a lookup",
    "K-04": "a scenario has one recipient domain; showing that a policy stays with its own "
            "domain needs two domains that share MX hosts",
    "K-03": "refreshing before expiry and surviving restarts are internal to the sender; a "
            "scenario sees only fetches, not schedules or restarts",
    "X-01": "needs DNSSEC-signed TLSA records; the lab DNS does not sign zones",
}


class _HasRfc(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def rfc(self) -> tuple[str, ...]: ...


def coverage(scenarios: Sequence[_HasRfc]) -> dict[str, list[str]]:
    """Requirement id -> ids of the scenarios that list it, in id order."""
    table: dict[str, list[str]] = {rid: [] for rid in REQUIREMENTS}
    for s in scenarios:
        for rid in s.rfc:
            table.setdefault(rid, []).append(s.id)
    return {rid: sorted(ids) for rid, ids in table.items()}


def render_markdown(scenarios: Sequence[_HasRfc]) -> str:
    """docs/conformance.md: id -> scenarios, and the ids not covered with the reason."""
    table = coverage(scenarios)
    lines = [
        "# Conformance coverage",
        "",
        "Generated by `downgrade-lab coverage` from the scenario catalogue; a test fails when",
        "this file is stale. Each id is one requirement of RFC 8461 (MTA-STS) or RFC 8460",
        "(TLS-RPT), as a scenario's `rfc` key names it; lab/core/conformance.py holds the titles.",
        "",
        "| id | requirement | scenarios |",
        "|---|---|---|",
    ]
    for rid, title in REQUIREMENTS.items():
        names = ", ".join(f"`{sid}`" for sid in table[rid]) or "—"
        lines.append(f"| {rid} | {title} | {names} |")
    missing = [rid for rid in REQUIREMENTS if not table[rid]]
    lines += ["", "## Not covered", ""]
    if not missing:
        lines.append("Every id is covered by at least one scenario.")
    for rid in missing:
        why = NOT_OBSERVABLE.get(rid, "no scenario yet")
        lines.append(f"- **{rid}** ({REQUIREMENTS[rid]}): {why}.")
    unknown = sorted(set(table) - set(REQUIREMENTS))
    if unknown:
        lines += ["", "## Unknown ids used by scenarios", ""]
        lines += [f"- {rid}: {', '.join(table[rid])}" for rid in unknown]
    return "\n".join(lines) + "\n"
