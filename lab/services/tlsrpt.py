"""TLS-RPT collector of the lab (DESIGN §2): `https://tlsrpt.D/report` and the mailbox.

Two doors, one record type (`ReceivedReport`):
- HTTPS (RFC 8460 §5.4): POSTs of application/tlsrpt+json or application/tlsrpt+gzip. Every
  request is kept with its SNI, media type, raw size, the decoded JSON or why it could not be
  decoded, and every RFC 8460 violation found.
- Mail (RFC 8460 §5.3): reports arrive at the lab receiver like any message; `read_mailbox()`
  picks them out of what the receiver stored and checks them the same way (plus the
  multipart/report form, the TLS-Report-* header fields and the DKIM signature).
Valid and invalid reports are both kept: judging them is `lab.verdict.judge_report`'s job.
Decoding and validation are the pure `lab.tlsrptcheck` and `lab.tlsrptmail`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable
from typing import Any

from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse
from aiohttp.web_server import Server
from msgspec import Struct, field

from ..core.tlsrpt import MEDIA_GZIP, MEDIA_JSON
from ..core.tlsrptcheck import decode_report, media_type, validate_report
from ..core.tlsrptmail import looks_like_report, read_mail
from ..errors import ServiceError
from ..harness.pki import PKI
from .base import HttpsHost, listening_address, require_lab_address
from .receiver import StoredMessage

REPORT_PATH = "/report"  # the lab's rua: https://tlsrpt.D/report
SHUTDOWN_GRACE_S = 0.1


class ReceivedReport(Struct, frozen=True):
    """One report as it arrived, by HTTPS POST or by mail, and what is wrong with it."""

    channel: str  # https | mail
    time: float
    size: int  # bytes as received: the POST body, or the whole stored message
    media_type: str | None  # the POST's Content-Type, or the mail's report part's type
    report: Any  # the decoded JSON; None when it could not be decoded
    error: str | None  # why it could not be decoded
    problems: tuple[str, ...]  # every RFC 8460 violation (the decode error included)
    sni: str | None = None  # https: the server name the client sent
    path: str | None = None  # https
    status: int | None = None  # https: what the collector answered
    mail: dict[str, Any] = field(default_factory=dict)  # mail: envelope, headers, DKIM, TLS

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel, "valid": self.valid, "time": self.time,
                               "size": self.size, "media_type": self.media_type}
        if self.channel == "https":
            out |= {"sni": self.sni, "path": self.path, "status": self.status}
        else:
            out |= self.mail
        out |= {"report": self.report, "error": self.error, "problems": list(self.problems)}
        return out


def check_body(body: bytes, content_type: str | None) -> tuple[Any, str | None, tuple[str, ...]]:
    """(decoded report, decode error, every problem) for a report body of `content_type`."""
    doc, error = decode_report(body, content_type)
    if error is not None:
        return None, error, (error,)
    return doc, None, validate_report(doc)


def status_for(method: str, path: str, content_type: str | None, error: str | None) -> int:
    """What the collector answers (RFC 8460 §5.4 asks for 2xx on success)."""
    if path.partition("?")[0] != REPORT_PATH:
        return 404
    if method != "POST":
        return 405
    if media_type(content_type) not in (MEDIA_JSON, MEDIA_GZIP):
        return 415
    return 400 if error is not None else 200


def mailed_report(message: StoredMessage) -> ReceivedReport:
    """A stored message read as an RFC 8460 §5.3 report."""
    mail = read_mail(message.data)
    problems = list(mail.problems)
    doc: Any = None
    error = None
    if mail.body is not None:
        doc, error, found = check_body(mail.body, mail.attachment_type)
        problems += found
    facts: dict[str, Any] = {
        "mail_from": message.mail_from, "rcpt_tos": list(message.rcpt_tos), "mx": message.mx,
        "tls": message.tls, "tls_version": message.tls_version,
        "content_type": mail.content_type, "tls_report_domain": mail.report_domain,
        "tls_report_submitter": mail.submitter, "subject": mail.subject,
        "filename": mail.filename,
        "dkim": None if mail.dkim is None else {
            "d": mail.dkim.domain, "s": mail.dkim.selector, "a": mail.dkim.algorithm,
            "h": list(mail.dkim.signed_headers), "body_hash_ok": mail.dkim.body_hash_ok,
            "verified": mail.dkim.verified},  # against the key the submitter published
    }
    return ReceivedReport("mail", message.time, len(message.data), mail.attachment_type, doc,
                          error, tuple(problems), mail=facts)


def read_mailbox(messages: Iterable[StoredMessage], mailboxes: Collection[str]
                 ) -> list[ReceivedReport]:
    """The stored messages that are reports: sent to a `mailto:` mailbox of the TLS-RPT record,
    or presenting themselves as one (multipart/report, TLS-Report-Domain)."""
    boxes = {m.lower() for m in mailboxes}
    return [mailed_report(m) for m in messages
            if looks_like_report(m.data) or any(r.lower() in boxes for r in m.rcpt_tos)]


class TlsRptCollector(HttpsHost):
    """The HTTPS report endpoint for `domain` (certificate for `tlsrpt.D` from the lab CA), on
    `port` after `start()`. `take_reports()` reads and clears what was posted."""

    name = "tlsrpt"

    def __init__(self, pki: PKI, domain: str, *, bind_host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(pki, domain, bind_host=bind_host, port=port)
        self._reports: list[ReceivedReport] = []
        self._http: Server | None = None
        self._server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return f"tlsrpt.{self.domain}"

    def take_reports(self) -> list[ReceivedReport]:
        """Every report POSTed since the last call, oldest first; clears the log."""
        out, self._reports = self._reports, []
        return out

    async def _start(self) -> None:
        host = require_lab_address(self.bind_host)
        try:  # shared through the PKI: one chain load per run, not per lab
            ctx = self.pki.listener_context(self.host)
        except OSError as exc:
            raise ServiceError(f"tlsrpt: cannot load the certificate of {self.host}: {exc}") from exc
        # aiohttp caps a request body at 1 MiB: a bigger POST is kept as an empty, broken report
        self._http = Server(self._handle, access_log=None)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self._http, host, self.port, ssl=ctx)
        except OSError as exc:
            self._http = None
            raise ServiceError(f"tlsrpt: cannot bind {host}:{self.port}: {exc}") from exc
        try:
            self.port = listening_address(self._server, "tlsrpt", host)[1]
        except ServiceError:
            await self._stop()
            raise

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._http is not None:
            await self._http.shutdown(SHUTDOWN_GRACE_S)
            self._http = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, request: BaseRequest) -> StreamResponse:
        try:
            ctype = request.headers.get("Content-Type")
            try:
                body = await request.read()
            except HTTPRequestEntityTooLarge:
                body, ctype = b"", None
            doc, error, problems = check_body(body, ctype)
            status = status_for(request.method, request.path, ctype, error)
            if status == 404:  # a POST beside the rua's path still counts, as a broken report
                problems = (f"posted to {request.path!r}, not the rua path {REPORT_PATH!r}",
                            *problems)
            conn = request.transport.get_extra_info("ssl_object") if request.transport else None
            if request.method == "POST":  # RFC 8460 §5.4: only a POST submits a report
                self._reports.append(ReceivedReport(
                    "https", time.time(), len(body), ctype, doc, error, problems,
                    sni=self.pki.sni_of(conn) if conn is not None else None,
                    path=request.raw_path, status=status))
        except Exception as exc:
            self.record_error(exc)
            raise
        return Response(status=status, text="ok\n" if status == 200 else f"{status}\n")
