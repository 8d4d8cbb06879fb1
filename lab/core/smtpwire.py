"""SMTP wire format for the attacker's proxy (sans-I/O, STYLE habits 1-2): replies parsed into
frozen `Reply` values and encoded back, so a rewritten reply is always well-formed; a line
buffer that frames what each side sends; the end of a DATA body. lab/core/smtp.py builds the relay
on these.

Bounds: a line, or a whole multi-line reply, longer than `MAX_LINE` is a protocol error of the
side that sent it. RFC 5321 §4.5.3.1 caps command and reply lines at 512 octets and text lines
at 1000, so 64 KiB is far beyond any honest peer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from msgspec import Struct

from ..errors import LabError

MAX_LINE = 64 * 1024


class SmtpError(LabError):
    """A protocol violation; `culprit` is "sender", "receiver" or "lab" (misuse of this API)."""

    def __init__(self, message: str, culprit: str = "lab") -> None:
        super().__init__(f"{culprit}: {message}")
        self.culprit = culprit


# RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
#                              Reply-code [ SP textstring ] CRLF
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])([^\r\n]*))?\Z")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _strip_eol(line: bytes) -> bytes:
    """A line without its terminator: LF, CRLF tolerated (habit 2)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    return line[:-1] if line.endswith(b"\r") else line


def _end_of_data(buf: bytearray) -> int:
    """Where the line holding a lone "." ends (RFC 5321 §4.1.1.4: the end of the mail data),
    or -1. `buf` starts at the start of a line; LF alone is tolerated (habit 2). bytes.find,
    not a regex: this runs over every byte of every message the attacker reads."""
    at = -1  # the "\n" before the candidate "." (-1: the start of the buffer)
    while True:
        dot = at + 1
        if buf[dot:dot + 1] == b".":
            if buf[dot + 1:dot + 2] == b"\n":
                return dot + 2
            if buf[dot + 1:dot + 3] == b"\r\n":
                return dot + 3
        at = buf.find(b"\n.", dot)
        if at < 0:
            return -1


def decode_text(raw: bytes) -> str:
    """Printable form of some complete lines for the transcript: one "\\n" per line end."""
    return "\n".join(_strip_eol(line).decode("utf-8", "replace") for line in raw.splitlines(True))


def _keyword(ehlo_line: str) -> str:
    match = _KEYWORD.match(ehlo_line)
    return match.group().upper() if match else ""


class Reply(Struct, frozen=True):
    """One SMTP reply: its code and the text of each line (without code or separator)."""
    code: int
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise SmtpError(f"reply code {self.code!r} is not in 200-599")
        if not self.lines:
            raise SmtpError("a reply has at least one line")
        for text in self.lines:
            if "\r" in text or "\n" in text:
                raise SmtpError(f"reply text {text!r} contains CR or LF")

    @classmethod
    def parse(cls, raw_lines: Sequence[bytes], culprit: str = "receiver") -> Reply:
        """Parse the lines of one complete reply (terminators optional)."""
        code: int | None = None
        texts: list[str] = []
        for i, raw in enumerate(raw_lines):
            match = _REPLY_LINE.match(_strip_eol(raw))
            if match is None:
                raise SmtpError(f"not a reply line: {raw!r}", culprit)
            this = int(match.group(1))
            if code is not None and this != code:
                raise SmtpError(f"reply line {raw!r} changes the code from {code}", culprit)
            if (match.group(2) == b"-") != (i < len(raw_lines) - 1):
                raise SmtpError(f"reply line {raw!r}: only the last line has no '-'", culprit)
            code = this
            texts.append((match.group(3) or b"").decode("utf-8", "surrogateescape"))
        if code is None:
            raise SmtpError("empty reply", culprit)
        return cls(code, tuple(texts))

    def encode(self) -> bytes:
        """Always well-formed: `CODE-text` on every line but the last, `CODE text` last."""
        last = len(self.lines) - 1
        out = []
        for i, text in enumerate(self.lines):
            sep = "-" if i < last else (" " if text else "")  # RFC 5321 §4.2: "250" alone is fine
            line = f"{self.code}{sep}{text}"
            out.append(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return b"".join(out)

    @property
    def keywords(self) -> tuple[str, ...]:
        """EHLO keywords, upper case: every line after the greeting (RFC 5321 §4.1.1.1)."""
        return tuple(_keyword(text) for text in self.lines[1:])

    def without_keyword(self, keyword: str) -> Reply:
        kept = [text for text in self.lines[1:] if _keyword(text) != keyword]
        return Reply(self.code, (self.lines[0], *kept))

    def with_keyword_renamed(self, keyword: str, new: str) -> Reply:
        lines = [new + text[len(keyword):] if _keyword(text) == keyword else text
                 for text in self.lines[1:]]
        return Reply(self.code, (self.lines[0], *lines))


class LineBuffer:
    """Bytes in, complete lines out. Never hands out part of a line (habit 2), and refuses to
    hold a line of `max_line` bytes or more (the error names `culprit`)."""

    def __init__(self, culprit: str, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._culprit = culprit
        self._max = max_line

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | None:
        """The next complete line with its terminator, or None until more data arrives."""
        end = self._buf.find(b"\n", 0, self._max)
        if end < 0:
            if len(self._buf) >= self._max:
                raise SmtpError(f"a line of {self._max} bytes or more without a newline",
                                self._culprit)
            return None
        line = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        return line

    def body_lines(self) -> tuple[bytes, bool]:
        """In DATA (RFC 5321 §4.1.1.4): every complete line buffered, in one piece, up to and
        including the lone "." that ends the mail data, and whether that came. A message is
        thousands of lines; taking them one at a time made the relay the proxy's bottleneck.
        The same bound as `next_line` holds for every line taken and for the unfinished rest."""
        end = _end_of_data(self._buf)
        stop = end if end >= 0 else self._buf.rfind(b"\n") + 1
        block = bytes(self._buf[:stop])
        if ((end < 0 and len(self._buf) - stop >= self._max)
                or (stop > self._max and max(map(len, block.split(b"\n"))) >= self._max)):
            raise SmtpError(f"a line of {self._max} bytes or more without a newline",
                            self._culprit)
        del self._buf[:stop]
        return block, end >= 0

    def take_rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def __len__(self) -> int:
        return len(self._buf)
