"""The requirement ids of CONFORMANCE.md (RFC 8461 / RFC 8460), and the T family of RFC 7672
(DANE for SMTP, DESIGN §9), for `downgrade-lab coverage`.

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
    # T: DANE for SMTP (RFC 7672); the RFC's requirement behind each is in DANE_SOURCES
    "T-01": "insecure (unsigned) TLSA records are ignored: pre-DANE delivery",
    "T-02": "a bogus or failed MX lookup: the message is deferred",
    "T-03": "TLSA is looked up only for MX hosts whose address records are secure",
    "T-04": "a failed (bogus) TLSA lookup makes the host unusable: next MX, else defer",
    "T-05": "a secure denial of TLSA records: no DANE for that host",
    "T-06": "usable secure TLSA records: authenticated TLS is mandatory, no fallback",
    "T-07": "secure TLSA records, none usable: TLS still mandatory, unauthenticated",
    "T-08": "DANE-EE(3): the leaf key or certificate matches; no name or date checks",
    "T-09": "DANE-TA(2): the anchor issued the chain; the leaf is in date and names the host",
    "T-10": "PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP",
    "T-11": "selectors 0/1 and matching types 0/1/2 honoured; unknown ones unusable",
    "T-12": "SNI carries the TLSA base domain (the MX host name)",
    "T-13": "an insecure MX RRset: DANE MAY still be used for MX hosts in signed zones",
    "T-14": "stripped, expired or foreign signatures and a missing or wrong DS are bogus",
    "T-15": "DANE failures are temporary: the message is deferred, never bounced",
}

# The RFC text each T id (and X-01) stands for: the section, and its requirement in the RFC's
# own terms (RFC 7672 unless another RFC is named). Code citing one: `# RFC 7672 §2.2 (T-04)`.
# X-01 is a verbatim quote of RFC 8461 (in quotation marks). T-01..T-15 are still PARAPHRASES,
# not quotes: the RFC 7672 text could not be checked sentence by sentence where this was last
# edited (issue 16 asks for the sentences themselves; a quote replaces a paraphrase only once
# it is checked against the RFC, and then goes in quotation marks like X-01's).
DANE_SOURCES: dict[str, tuple[str, str]] = {
    "T-01": ("§2.2", "TLSA records that are not \"secure\" (DNSSEC-validated) are not used; "
             "the client falls back to its pre-DANE security policy"),
    "T-02": ("§2.2.1", "a bogus or indeterminate MX RRset must not be used; delivery is "
             "delayed (treated like a temporary DNS failure)"),
    "T-03": ("§2.2.2", "TLSA records are looked up only when the MX host's address records "
             "were obtained securely; otherwise DANE does not apply to that host"),
    "T-04": ("§2.2", "when the TLSA lookup fails (bogus, indeterminate, an error other than a "
             "secure denial), the client must not deliver to that server and treats it as "
             "unreachable: the next MX host is tried"),
    "T-05": ("§2.2", "a secure NXDOMAIN or NODATA for the TLSA RRset means the server "
             "publishes no DANE: pre-DANE opportunistic TLS"),
    "T-06": ("§2.2, §3", "with usable secure TLSA records the client must use TLS and "
             "authenticate the server with them; without that it must not deliver there"),
    "T-07": ("§2.2, §3.1", "secure TLSA records none of which is usable still oblige the "
             "client to use TLS (mandatory unauthenticated TLS), never cleartext"),
    "T-08": ("§3.1.1", "DANE-EE(3): the server's certificate or key is matched directly; name "
             "checks and validity-period checks are not applied"),
    "T-09": ("§3.1.2, §3.2.3", "DANE-TA(2): the trust anchor must be in the server's chain and "
             "issue it; the server certificate's name must match a reference identifier (the "
             "TLSA base domain or the next-hop domain) and its dates are checked"),
    "T-10": ("§3.1.3", "PKIX-TA(0) and PKIX-EE(1) are not used for SMTP: such records are "
             "treated as unusable"),
    "T-11": ("§3.1, RFC 6698 §2.1, RFC 7671 §9", "selectors Cert(0) and SPKI(1) and matching "
             "types Full(0), SHA2-256(1), SHA2-512(2) are supported; a record with an unknown "
             "usage, selector or matching type is unusable"),
    "T-12": ("§8.1", "a DANE client sends SNI with the TLSA base domain"),
    "T-13": ("§2.2.1", "with an insecure MX RRset the client MAY still use DANE TLS for MX hosts "
             "whose own records are secure (a signed hosting provider)"),
    "T-14": ("§2.1.1, RFC 4035 §5", "a response that fails validation is bogus: missing or "
             "expired signatures, a forged record, a broken chain of DS records; bogus is a "
             "failure, not \"insecure\""),
    "T-15": ("§2.2", "failure to deliver securely is a temporary condition: the message stays "
             "queued"),
    "X-01": ("RFC 8461 §2", "\"However, MTA-STS is designed not to interfere with DANE "
             "deployments when the two overlap; in particular, senders who implement MTA-STS "
             "validation MUST NOT allow MTA-STS Policy validation to override a failing DANE "
             "validation\""),
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
}

# Where RFC 8461 / RFC 8460 leave room: (the point, what the RFC says, what the lab accepts, how
# the catalogue grades it). Invariant: a graded step resting on one of these tolerates both
# readings or grades only what every reading does, except the points marked "(open)"; every
# scenario named here exists, and every scenario tagged `room` is named (tests/test_coverage.py).
ROOM: tuple[tuple[str, str, str, str], ...] = (
    ("A trailing dot in an mx pattern (`mx1.example.test.`)",
     'RFC 8461 §3.2 sts-policy-mx-value = ["*."] Domain; an RFC 5321 Domain has no trailing dot, '
     "and §3.3 has a sender with an invalid policy deliver as if there were none",
     "the absolute form of the name (one trailing dot, ignored when matching)",
     "`mx/trailing-dot`: the honest step expects delivered-tls (both readings); the stripped "
     "step expects not-delivered and tolerates delivered-plaintext (WEAK); no report check"),
    ("WSP before the first `;` (`v=STSv1 ; id=...`, `v=TLSRPTv1 ; rua=...`)",
     'the prose of RFC 8461 §3.1 and RFC 8460 §3 discards records that do not begin with '
     '"v=STSv1;" / "v=TLSRPTv1;"; the ABNF field-delim (*WSP ";" *WSP) allows the space',
     "the ABNF: the record is valid",
     "`dns/txt-space-before-first-sep` expects not-delivered and tolerates delivered-plaintext; "
     "`dns/txt-whitespace` puts WSP only where both readings agree; no TLS-RPT scenario uses it"),
    ("max_age above 31557600",
     'RFC 8461 §3.2 gives "a maximum value of 31557600", not what a sender does above it',
     "clamped to 31557600 (reject and default are also seen: chasquid, checkdmarc, mailauth)",
     "`parse/max-age-above-limit` runs an honest path only, where every reading delivers over "
     "TLS (P-06)"),
    ("The media type check",
     'RFC 8461 §3.2: "senders SHOULD validate that the media type is "text/plain""',
     "text/plain only, parameters and case ignored",
     "`fetch/content-type-html` expects delivered and tolerates not-delivered (a sender that "
     "skips the SHOULD enforces the served policy)"),
    ("A size cap on the policy body",
     "RFC 8461 §3.3: a sender MAY cap the size (64 KiB suggested)",
     "64 KiB; a larger body is a failed fetch",
     "`fetch/oversized` expects delivered and tolerates not-delivered"),
    ("A repeated rua field",
     "RFC 8460 §3 says nothing of a repeated field (RFC 8461 §3.2's first-wins rule is MTA-STS's)",
     "every URI of every rua field, as mox does (checkdmarc keeps the first field)",
     "no scenario grades it"),
    ("A `*` in the MX host itself (`*.example.test` as a host name)",
     "RFC 8461 §4.1 and RFC 6125 §6.4.3 give the wildcard to the pattern only",
     "never matches (fail closed, as mailauth does)",
     "no scenario grades it"),
    ("A syntactically invalid TLS-RPT record",
     "RFC 8460 §3 does not say what a sender does with one (RFC 8461 §3.1 does for MTA-STS)",
     "no reporting",
     "`report = false` only where every reading agrees: no rua at all (`tlsrpt/no-rua`) or no "
     "record left after the discard (`tlsrpt/missing-version`, `tlsrpt/version-lowercase`)"),
    ("The result type of an MX the policy does not list",
     "RFC 8460 §4.3.1: certificate-host-mismatch (a certificate not adhering to the policy) and "
     "validation-failure (any other reason) overlap here",
     "the reference sender reports validation-failure",
     "`mx/not-listed`, `mx/prefix-trick`, `mx/suffix-trick`, `mx/wildcard-*`, `spoof/mx-*` still "
     "require validation-failure exactly; a sender choosing certificate-host-mismatch fails the "
     "report check (open)"),
    ("The first fetch of a cold sender",
     "A-07 (RFC 8461 §5.1): the first fetch may be asynchronous",
     "the reference sender fetches before it delivers",
     "the strip/, intercept/ and spoof/ cold scenarios tolerate delivered-plaintext on the first "
     "step; the dns/, parse/, fetch/ and mx/ scenarios grade the first message as if the policy "
     "were fetched first (open)"),
)

# Points a sender might take for room, where an RFC sentence decides (the scenarios quote it).
DECIDED: tuple[tuple[str, str], ...] = (
    ("A repeated MTA-STS field (`id`, `mode`)",
     'RFC 8461 §3.2: "all entries except for the first SHALL be ignored" (`dns/txt-repeated-id`, '
     "`parse/repeated-mode-*`)"),
    ("A wildcard over several labels or none",
     'RFC 8461 §4.1: "*" "may only be used to match the entire left-most label" (`mx/wildcard-*`)'),
    ("Upper case in an mx pattern",
     "RFC 8461 §4.1 matches as RFC 6125 does, case-insensitively (`mx/case-insensitive`)"),
    ("A U-label in an mx pattern",
     'RFC 8461 §3.2: the mx value "MUST specify the Punycode-encoded A-label" (tests only)'),
    ("An 11-digit max_age",
     "RFC 8461 §3.2 sts-policy-max-age-value = 1*10(DIGIT) (`parse/max-age-11-digits`)"),
    ("A bad percent-escape or raw `!` in a rua URI",
     'RFC 8460 §3: tlsrpt-uri is an RFC 3986 URI and "exclamation points (ASCII 0x21) MUST be '
     'encoded" (tests only)'),
    ("A report date-time without a UTC offset (as Microsoft has sent)",
     "RFC 3339 §5.6: full-time = partial-time time-offset; the report is invalid. A leap second "
     "(`23:59:60Z` at a month's end, §5.7) is valid"),
)


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
    lines += ["", "## Where the RFC leaves room", "",
              "Where the RFCs let two careful readers differ, a graded step tolerates both "
              "readings (WEAK, with the reason in `because`) or grades only what every reading "
              "does, so a sender that follows the ABNF strictly is never failed for it. The two "
              "points marked (open) still grade one reading; neither is about the ABNF.", "",
              "| point | what the RFC says | the lab accepts | how the catalogue grades it |",
              "|---|---|---|---|"]
    lines += [f"| {point} | {rfc} | {lab} | {grading} |" for point, rfc, lab, grading in ROOM]
    lines += ["", "Not room, though it can look so: the RFC decides, and the scenario's `because` "
              "quotes it.", ""]
    lines += [f"- {point}: {rfc}." for point, rfc in DECIDED]
    lines += ["", "## The RFC text behind the DANE ids", "",
              "A text in quotation marks is the RFC's own sentence; the others are paraphrases "
              "of RFC 7672, not yet checked word for word against it.", ""]
    for rid, (section, text) in DANE_SOURCES.items():
        lines.append(f"- **{rid}** ({section}): {text}.")
    unknown = sorted(set(table) - set(REQUIREMENTS))
    if unknown:
        lines += ["", "## Unknown ids used by scenarios", ""]
        lines += [f"- {rid}: {', '.join(table[rid])}" for rid in unknown]
    return "\n".join(lines) + "\n"
