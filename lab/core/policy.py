"""Sans-I/O MTA-STS (RFC 8461): TXT record discovery, policy parsing and serialising, fetch
validation and MX pattern matching. Pure functions over frozen values; the shell does DNS and
HTTPS and feeds the results in. The cache model and the policy decision table live in
`lab.policycache`.

Where the RFC's prose and its ABNF disagree, the ABNF wins and the spot is commented. Parsing is
case-sensitive, as the ABNF's %s strings are (RFC 7405)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar, Literal

from msgspec import Struct

from ..errors import LabError

Mode = Literal["enforce", "testing", "none"]
MODES: tuple[Mode, ...] = ("enforce", "testing", "none")
_MODE: dict[str, Mode] = {mode: mode for mode in MODES}
MAX_AGE_LIMIT = 31557600  # RFC 8461 §3.2 max_age: "maximum value of 31557600"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3 suggested size cap (F-06)

# RFC 8460 §4.3 result types for the MTA-STS phases.
STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
STS_POLICY_INVALID = "sts-policy-invalid"
STS_WEBPKI_INVALID = "sts-webpki-invalid"


class PolicyError(LabError):
    """An MTA-STS phase failed; `result_type` is what a TLS-RPT report says about it."""

    phase: ClassVar[str] = "mta-sts"
    policy_type: ClassVar[str] = "sts"  # RFC 8460 §4.4 policy-type
    default_result_type: ClassVar[str | None] = STS_POLICY_FETCH_ERROR

    def __init__(self, detail: str, *, result_type: str | None = None) -> None:
        self.detail = detail
        self.result_type = result_type or self.default_result_type
        super().__init__(f"{self.phase}: {detail}")


class NoRecord(PolicyError):
    """No `v=STSv1` TXT record: the domain has no MTA-STS. Not a failure in TLS-RPT terms."""

    phase = "no mta-sts record"
    policy_type = "no-policy-found"
    default_result_type = None


class MultipleRecords(PolicyError):
    """More than one `v=STSv1` TXT record (D-02)."""

    # Discovery failed, so no policy could be retrieved: reported as a fetch error, as mox does.
    phase = "multiple mta-sts records"


class RecordSyntax(PolicyError):
    """The one `v=STSv1` TXT record breaks the RFC 8461 §3.1 grammar (D-03, D-04, D-05)."""

    phase = "mta-sts record syntax"


class FetchError(PolicyError):
    """The HTTPS fetch failed: status, media type, size, redirect, or TLS (`webpki=True`)."""

    phase = "mta-sts policy fetch"

    def __init__(self, detail: str, *, webpki: bool = False) -> None:
        # RFC 8460 §4.3.2.2: a certificate problem is sts-webpki-invalid, the rest fetch errors.
        super().__init__(detail, result_type=STS_WEBPKI_INVALID if webpki else None)


class PolicySyntax(PolicyError):
    """The fetched body is not a valid RFC 8461 §3.2 policy (P-02, P-05, P-07)."""

    phase = "mta-sts policy syntax"
    default_result_type = STS_POLICY_INVALID


# ---- grammar pieces (RFC 8461 §3.1, §3.2; RFC 5321 §4.1.2) -----------------------------------
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}"  # sts-ext-name and sts-policy-ext-name
_TXT_SEP = re.compile(r"[ \t]*;[ \t]*")  # sts-field-delim = *WSP ";" *WSP
_TXT_FIELD = re.compile(rf"({_NAME})=([\x21-\x3a\x3c\x3e-\x7e]+)")  # sts-ext-value
_TXT_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # sts-id value: 1*32(ALPHA / DIGIT)
_POLICY_LINE = re.compile(rf"({_NAME}):[ \t]*(.*?)[ \t]*", re.DOTALL)  # field-delim ":" *WSP
_EXT_VALUE = re.compile(r"[\x20-\x7e\x80-\ud7ff\ue000-\U0010ffff]+")  # no CTLs, UTF-8 allowed
_MAX_AGE = re.compile(r"[0-9]{1,10}")  # sts-policy-max-age-value = 1*10(DIGIT)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")  # Let-dig [Ldh-str]


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(s: str) -> str:
    # DNS names compare case-insensitively in ASCII only; str.lower() folds non-ASCII too.
    return s.translate(_LOWER)


# ---- TXT discovery ----------------------------------------------------------------------------
class TxtRecord(Struct, frozen=True):
    """A valid `_mta-sts` record: its `id` and any unknown fields (first of each name)."""

    id: str
    extensions: tuple[tuple[str, str], ...] = ()


def join_strings(parts: Sequence[bytes | str]) -> str:
    """One TXT record from its character-strings, joined with no spaces (RFC 8461 §3.1, D-07).

    Bytes are decoded as Latin-1 so that nothing is lost; non-ASCII then fails the grammar."""
    return "".join(p.decode("latin-1") if isinstance(p, bytes) else p for p in parts)


def _is_sts(record: str) -> bool:
    # RFC 8461 §3.1 (D-01, D-03): the prose says records not beginning with "v=STSv1;" are
    # discarded; the ABNF (sts-version sts-sep) also allows "v=STSv1 ;" (erratum 6285). We follow
    # the ABNF. Case-sensitive: "v=stsv1", "v=STSv10", "v=STSv2" and "id=1; v=STSv1" are discarded.
    return record.startswith("v=STSv1") and _TXT_SEP.match(record, 7) is not None


def parse_txt_records(records: Sequence[str]) -> TxtRecord:
    """The one MTA-STS record among the TXT records at `_mta-sts.D`, each already joined.

    Raises NoRecord, MultipleRecords or RecordSyntax; any of them means "no policy from DNS"."""
    if isinstance(records, str):
        raise TypeError("parse_txt_records takes a sequence of records, not one string")
    sts = [r for r in records if _is_sts(r)]  # RFC 8461 §3.1 (D-01): discard the others first
    if not sts:
        raise NoRecord("no TXT record begins with 'v=STSv1;'")
    if len(sts) > 1:  # RFC 8461 §3.1 (D-02): counted before syntax, so one bad one still counts
        raise MultipleRecords(f"{len(sts)} v=STSv1 records: {sts!r}")
    return parse_txt_record(sts[0])


def parse_txt_record(record: str) -> TxtRecord:
    """One joined TXT record: sts-version 1*(sts-sep sts-field) [sts-sep] (RFC 8461 §3.1)."""
    if not _is_sts(record):
        raise NoRecord(f"not an MTA-STS record: {record!r}")
    fields: list[tuple[str, str]] = []
    pos = 7
    while True:
        sep = _TXT_SEP.match(record, pos)  # RFC 8461 §3.1 (D-05)
        if sep is None:
            raise RecordSyntax(f"expected ';' at offset {pos} of {record!r}")
        pos = sep.end()
        if pos == len(record) and fields:  # RFC 8461 §3.1 (D-05): a trailing ';' is optional
            break
        field = _TXT_FIELD.match(record, pos)
        if field is None:
            raise RecordSyntax(f"bad field at offset {pos} of {record!r}")
        fields.append((field[1], field[2]))
        pos = field.end()
        if pos == len(record):
            break
    first: dict[str, str] = {}
    for name, value in fields:  # RFC 8461 §3.2 (D-06): for a repeated field the first counts
        first.setdefault(name, value)
    if "id" not in first:  # RFC 8461 §3.1 (D-04): id is required; "ID" is an unknown field
        raise RecordSyntax(f"no id field in {record!r}")
    if not _TXT_ID.fullmatch(first["id"]):  # RFC 8461 §3.1 (D-04): 1*32(ALPHA / DIGIT)
        raise RecordSyntax(f"id must be 1 to 32 letters or digits, got {first['id']!r}")
    ext = tuple((k, v) for k, v in first.items() if k != "id")  # RFC 8461 §3.2 (D-05): ignored
    return TxtRecord(id=first["id"], extensions=ext)


# ---- policy -----------------------------------------------------------------------------------
def _check_mx(pattern: str) -> None:
    # RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain (RFC 5321 Domain: LDH labels, A-labels
    # only). "x*.example" and "*" alone are not patterns. One trailing dot (the absolute form of
    # the same name) is accepted, as matching ignores it (M-01): rejecting the line would turn a
    # domain's enforce policy into no policy at all over a spelling.
    domain = pattern[2:] if pattern.startswith("*.") else pattern
    domain = domain.removesuffix(".")
    labels = domain.split(".")
    if len(domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise PolicySyntax(f"mx {pattern!r} is not ['*.'] followed by a domain name")


def _check_extension(name: str, value: str) -> None:
    if not re.fullmatch(_NAME, name):
        raise PolicySyntax(f"bad field name {name!r}")
    # RFC 8461 §3.2 sts-policy-ext-value: at least one char, no CTLs (tab included), no
    # leading/trailing space; UTF-8 is allowed here and only here.
    if not _EXT_VALUE.fullmatch(value) or value != value.strip(" "):
        raise PolicySyntax(f"bad value {value!r} for field {name!r}")


class Policy(Struct, frozen=True):
    """An MTA-STS policy (RFC 8461 §3.2). Construction validates it, so every Policy is valid
    and `serialise_policy` output parses back to an equal Policy."""

    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    extensions: tuple[tuple[str, str], ...] = ()
    version: str = "STSv1"

    def __post_init__(self) -> None:
        if self.version != "STSv1":
            raise PolicySyntax(f"version must be 'STSv1', got {self.version!r}")
        if self.mode not in MODES:  # RFC 8461 §3.2 (P-05)
            raise PolicySyntax(f"mode must be enforce, testing or none, got {self.mode!r}")
        if not 0 <= self.max_age <= MAX_AGE_LIMIT:
            raise PolicySyntax(f"max_age must be 0..{MAX_AGE_LIMIT}, got {self.max_age!r}")
        if not self.mx and self.mode != "none":  # RFC 8461 §3.2 (P-02)
            raise PolicySyntax(f"mode {self.mode!r} needs at least one mx")
        for pattern in self.mx:
            _check_mx(pattern)
        names = [name for name, _ in self.extensions]
        if len(set(names)) != len(names) or set(names) & {"version", "mode", "mx", "max_age"}:
            raise PolicySyntax(f"extension names must be unique and unknown: {names!r}")
        for name, value in self.extensions:
            _check_extension(name, value)

    def matches(self, host: str) -> bool:
        """Whether the MX host name matches one of the policy's `mx` patterns (M-01, M-02)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def parse_policy(body: bytes | str) -> Policy:
    """Parse a policy body (RFC 8461 §3.2). Raises PolicySyntax."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")  # RFC 8461 §3.2: the policy is UTF-8 (P-07)
        except UnicodeDecodeError as e:
            raise PolicySyntax(f"body is not UTF-8: {e}") from None
    else:
        text = body
    lines = text.split("\n")  # RFC 8461 §3.2 (P-01): sts-policy-term = LF / CRLF
    if lines[-1] == "":
        lines.pop()  # RFC 8461 §3.2 (P-01): the final terminator is optional
    first: dict[str, str] = {}
    mx: list[str] = []
    extensions: list[tuple[str, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        # The ABNF has no blank lines and no leading space; trailing *WSP is allowed (P-01).
        match = _POLICY_LINE.fullmatch(line)
        if match is None:  # RFC 8461 §3.2 (P-07): HTML and other garbage end here
            raise PolicySyntax(f"line {number} is not 'key: value': {line[:80]!r}")
        key, value = match[1], match[2]
        if key == "mx":  # RFC 8461 §3.2: mx is the one field that repeats
            _check_mx(value)
            mx.append(value)
        elif key not in first:  # RFC 8461 §3.2 (P-04): for other keys the first counts
            _check_extension(key, value)  # the generic grammar every field satisfies (P-03)
            first[key] = value
            if key not in ("version", "mode", "max_age"):
                extensions.append((key, value))  # RFC 8461 §3.2 (P-03): unknown, ignored
        else:
            _check_extension(key, value)  # a repeat is ignored but must still be well formed
    for key in ("version", "mode", "max_age"):  # RFC 8461 §3.2 (P-02): all required
        if key not in first:
            raise PolicySyntax(f"no {key!r} field")
    if first["version"] != "STSv1":  # RFC 8461 §3.2 (P-02)
        raise PolicySyntax(f"version must be 'STSv1', got {first['version']!r}")
    mode = _MODE.get(first["mode"])
    if mode is None:  # RFC 8461 §3.2 (P-05): an unknown mode is invalid, never enforce
        raise PolicySyntax(f"mode must be enforce, testing or none, got {first['mode']!r}")
    if not _MAX_AGE.fullmatch(first["max_age"]):  # RFC 8461 §3.2 (P-02): 1*10(DIGIT)
        raise PolicySyntax(f"max_age must be 1 to 10 digits, got {first['max_age']!r}")
    # RFC 8461 §3.2 (P-06): above the maximum, clamp rather than reject: the domain clearly
    # wants MTA-STS, and a clamped policy is safer than falling back to no policy.
    max_age = min(int(first["max_age"]), MAX_AGE_LIMIT)
    return Policy(mode=mode, mx=tuple(mx), max_age=max_age, extensions=tuple(extensions))


def serialise_policy(policy: Policy) -> str:
    """The policy as served at the well-known URL, CRLF line ends (RFC 8461 §3.2)."""
    fields = [("version", policy.version), ("mode", policy.mode)]
    fields += [("mx", pattern) for pattern in policy.mx]
    fields += [("max_age", str(policy.max_age)), *policy.extensions]
    return "".join(f"{key}: {value}\r\n" for key, value in fields)


def validate_fetch(status: int, content_type: str | None, body: bytes,
                   redirected: bool = False) -> Policy:
    """Judge an HTTPS response to `GET /.well-known/mta-sts.txt` (RFC 8461 §3.3).

    Raises FetchError for the HTTP envelope, PolicySyntax for the body."""
    if redirected:  # RFC 8461 §3.3 (F-03): "HTTP 3xx redirects MUST NOT be followed"
        raise FetchError("the response came through a redirect")
    if status != 200:  # RFC 8461 §3.3 (F-03): only 200 is a policy; 204, 3xx, 404, 5xx are not
        extra = ": redirects are not followed" if 300 <= status < 400 else ""
        raise FetchError(f"HTTP status {status!r}, 200 required{extra}")
    media_type = _ascii_lower((content_type or "").split(";", 1)[0].strip(" \t"))
    if media_type != "text/plain":  # RFC 8461 §3.2 (F-05): parameters ignored
        raise FetchError(f"media type {content_type!r}, text/plain required")
    if len(body) > MAX_POLICY_BYTES:  # RFC 8461 §3.3 (F-06): a failure, never truncated
        raise FetchError(f"body of {len(body)} bytes exceeds {MAX_POLICY_BYTES}")
    return parse_policy(body)


# ---- MX matching and application --------------------------------------------------------------
def mx_matches(pattern: str, host: str) -> bool:
    """Whether an MX host name matches one `mx` pattern (RFC 8461 §4.1, M-01).

    Case-insensitive (ASCII), one trailing dot ignored on either side. A leading "*." matches
    exactly one whole left-most label: "*.example.test" matches "mail.example.test" but neither
    "example.test" nor "a.b.example.test". A "*" anywhere else is an ordinary character, so
    "x*.example.test" matches only itself (and is never produced by `parse_policy`).

    An MX host with a "*" in it matches nothing: the wildcard belongs to the presented
    identifier, the pattern (RFC 8461 §4.1, RFC 6125 §6.4.3); the host is the reference
    identifier, a host name, and "*" is not an LDH label. The RFC does not spell this case out;
    failing closed is the safe reading (mailauth's validate-mx tests agree)."""
    if "*" in host:
        return False
    pattern = _ascii_lower(pattern.removesuffix("."))
    host = _ascii_lower(host.removesuffix("."))
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern


def tls_required(policy: Policy | None) -> bool:
    """Whether a failed TLS validation must stop delivery: only under `enforce` (RFC 8461 §5).

    `testing` delivers anyway (A-04), `none` and no policy are opportunistic; an invalid policy
    never reaches here as a Policy (A-05)."""
    return policy is not None and policy.mode == "enforce"
