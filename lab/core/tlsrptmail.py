"""TLS reports by mail (RFC 8460 §5.3; R-03, R-05): compose the `multipart/report` message a
reporter sends, and read one the lab receiver stored.

No I/O. It uses the stdlib `email` package, which imports `socket` for helpers we never call
(`make_msgid` is always given a domain), so it is kept apart from the strictly pure `lab.tlsrpt`.
"""

from __future__ import annotations

import base64
import re
import uuid
from email import message_from_bytes
from email import policy as email_policy
from email.message import Message
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from msgspec import Struct

from .tlsrpt import MEDIA_GZIP, MEDIA_JSON

if TYPE_CHECKING:
    from .dkim import DkimFacts

REPORT_TYPE = "tlsrpt"  # multipart/report; report-type="tlsrpt" (RFC 8460 §5.3)


def compose_mail(attachment: bytes, *, policy_domain: str, submitter: str, mail_from: str,
                 rcpt_to: str, report_id: str, filename: str, gzipped: bool = True,
                 now: float | None = None) -> bytes:
    """The RFC 8460 §5.3 message: `multipart/report; report-type="tlsrpt"`, the
    TLS-Report-Domain and TLS-Report-Submitter header fields, the recommended Subject, a short
    human-readable part and the report as application/tlsrpt+gzip (or +json), base64. CRLF
    line ends. Written out directly: `EmailMessage` spent about 2.5 ms a report parsing back the
    header fields it was given; `read_mail` reads what this writes."""
    fields = (policy_domain, submitter, mail_from, rcpt_to, report_id, filename)
    if any("\r" in v or "\n" in v for v in fields):  # as EmailMessage refused them
        raise ValueError(f"header values may not contain CR or LF: {fields!r}")
    boundary = f"=_tlsrpt_{uuid.uuid4().hex}"  # RFC 2046 §5.1.1: not found in any part
    subtype = (MEDIA_GZIP if gzipped else MEDIA_JSON).partition("/")[2]
    body = base64.encodebytes(attachment).decode("ascii").replace("\n", "\r\n")
    lines = [
        f"From: {mail_from}",
        f"To: {rcpt_to}",
        f"Date: {formatdate(now, localtime=False)}",
        f"Message-ID: {make_msgid(domain=submitter)}",
        _folded(f"Subject: Report Domain: {policy_domain} Submitter: {submitter} "
                f"Report-ID: <{report_id}>"),
        f"TLS-Report-Domain: {policy_domain}",
        f"TLS-Report-Submitter: {submitter}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type="{REPORT_TYPE}";\r\n boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 7bit",
        "",
        f"This is an aggregate TLS report from {submitter} for {policy_domain}.",
        "",
        f"--{boundary}",
        f"Content-Type: application/{subtype}",
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment;\r\n filename="{_quoted(filename)}"',
        "",
        body + f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _quoted(value: str) -> str:
    """`value` as the inside of an RFC 2045 quoted-string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _folded(field: str, width: int = 78) -> str:
    """A header field folded at spaces so lines stay within `width` (RFC 5322 §2.1.1)."""
    out: list[str] = []
    line = ""
    for word in field.split(" "):
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\r\n ".join([*out, line])


class MailedReport(Struct, frozen=True):
    """What a stored message says as a TLS report, and every way it breaks RFC 8460 §5.3."""

    content_type: str  # the top-level media type, with parameters
    report_domain: str | None  # TLS-Report-Domain
    submitter: str | None  # TLS-Report-Submitter
    subject: str | None
    attachment_type: str | None  # media type of the report part
    filename: str | None
    body: bytes | None  # the report part, transfer encoding undone
    dkim: DkimFacts | None  # the DKIM-Signature, if any
    problems: tuple[str, ...]


def looks_like_report(data: bytes) -> bool:
    """A stored message that presents itself as a TLS report (so it is judged as one)."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    return b"tls-report-domain:" in head or b"multipart/report" in head


def _report_part(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() in (MEDIA_JSON, MEDIA_GZIP):
            return part
    return None


def read_mail(data: bytes) -> MailedReport:
    """Read a stored message as an RFC 8460 §5.3 report (R-05, and R-03's DKIM signature)."""
    msg = message_from_bytes(data, policy=email_policy.compat32)
    problems: list[str] = []
    ctype = msg.get_content_type()
    report_type = (msg.get_param("report-type") or "")
    if ctype != "multipart/report" or not isinstance(report_type, str) or \
            report_type.lower() != REPORT_TYPE:
        problems.append(f"mail: Content-Type is {msg.get('Content-Type', 'missing')!r}, not "
                        f'multipart/report; report-type="{REPORT_TYPE}" (RFC 8460 §5.3)')
    fields = {name: _header(msg, name) for name in ("TLS-Report-Domain", "TLS-Report-Submitter")}
    for name, value in fields.items():
        if value is None:
            problems.append(f"mail: no {name} header field (RFC 8460 §5.3)")
    part = _report_part(msg)
    body: bytes | None = None
    if part is None:
        problems.append(f"mail: no {MEDIA_JSON} or {MEDIA_GZIP} part (RFC 8460 §5.3)")
    else:
        payload = part.get_payload(decode=True)
        body = payload if isinstance(payload, bytes) else None
    from .dkim import inspect_signature  # dkimpy and PyNaCl: mailed reports only

    dkim = inspect_signature(data)
    if dkim is None:
        problems.append("mail: no DKIM-Signature (RFC 8460 §5.3: reports sent via SMTP MUST "
                        "carry a valid DKIM signature)")
    else:
        problems += [f"mail: DKIM-Signature: {p}" for p in dkim.problems]
    return MailedReport(
        content_type=_header(msg, "Content-Type") or "", report_domain=fields["TLS-Report-Domain"],
        submitter=fields["TLS-Report-Submitter"], subject=_header(msg, "Subject"),
        attachment_type=part.get_content_type() if part is not None else None,
        filename=part.get_filename() if part is not None else None, body=body, dkim=dkim,
        problems=tuple(problems))


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    return re.sub(r"\s+", " ", str(value)).strip() if value is not None else None
