"""Just enough DKIM (RFC 6376) for TLS reports by mail (RFC 8460 §5.3, R-03): the reference
sender signs its reports (rsa-sha256, relaxed/relaxed), and the collector inspects a signature.

The lab has no DNS for a submitter's domain, so the collector cannot fetch the public key: it
checks the tags RFC 8460 §5.3 cares about (no `l=`), that `From` is signed, and that the body
hash matches the body it received. `verify()` checks a whole signature with a key given to it.
No I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                  "tls-report-domain", "tls-report-submitter")
_REQUIRED_TAGS = ("v", "a", "b", "bh", "d", "h", "s")  # RFC 6376 §3.5
_WSP = re.compile(r"[ \t]+")


def _split(message: bytes) -> tuple[list[bytes], bytes]:
    """(header fields, each with its folding, no final CRLF; body) of a CRLF message."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message, b""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields, body


def _relaxed_header(field: bytes) -> bytes:
    # RFC 6376 §3.4.2: lower-case name, unfold, squeeze WSP, no WSP around the colon or at the end.
    name, _, value = field.partition(b":")
    text = _WSP.sub(" ", value.replace(b"\r\n", b"").decode("latin-1")).strip()
    return name.strip().lower() + b":" + text.encode("latin-1")


def _relaxed_body(body: bytes) -> bytes:
    # RFC 6376 §3.4.4: squeeze WSP, drop it at line ends, drop empty lines at the end.
    lines = [_WSP.sub(" ", line.decode("latin-1")).rstrip(" ").encode("latin-1")
             for line in body.split(b"\r\n")]
    while lines and not lines[-1]:
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def _simple_body(body: bytes) -> bytes:
    # RFC 6376 §3.4.3: only trailing empty lines go; an empty body is one CRLF.
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def _body_hash(body: bytes, relaxed: bool) -> str:
    canon = _relaxed_body(body) if relaxed else _simple_body(body)
    return base64.b64encode(hashlib.sha256(canon).digest()).decode()


def _pick(fields: list[bytes], names: list[str]) -> list[bytes]:
    """RFC 6376 §5.4.2: each name in h= takes the last not yet used instance of that field."""
    used: set[int] = set()
    out: list[bytes] = []
    for name in names:
        for i in range(len(fields) - 1, -1, -1):
            if i not in used and fields[i].partition(b":")[0].strip().lower() == name.encode():
                used.add(i)
                out.append(fields[i])
                break
    return out


def _signed_data(fields: list[bytes], names: list[str], signature_field: bytes) -> bytes:
    unsigned = re.sub(rb"(\bb=)[^;]*", rb"\1", signature_field)  # b= emptied, bh= kept
    return b"".join(_relaxed_header(f) + b"\r\n" for f in _pick(fields, names)) + \
        _relaxed_header(unsigned)


@cache
def lab_key() -> rsa.RSAPrivateKey:
    """One RSA-2048 key per process (RFC 8301: at least 1024 bits, 2048 recommended)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign(message: bytes, *, domain: str, selector: str, key: rsa.RSAPrivateKey | None = None,
         now: float | None = None) -> bytes:
    """`message` (CRLF line ends) with a DKIM-Signature field prepended (rsa-sha256,
    relaxed/relaxed, no `l=` as RFC 8460 §5.3 demands)."""
    key = key or lab_key()
    fields, body = _split(message)
    present = {f.partition(b":")[0].strip().lower().decode() for f in fields}
    names = [n for n in SIGNED_HEADERS if n in present]
    tags = (f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s={selector}; "
            f"t={int(now if now is not None else time.time())}; h={':'.join(names)}; "
            f"bh={_body_hash(body, relaxed=True)}; b=")
    field = b"DKIM-Signature: " + tags.encode()
    signature = key.sign(_signed_data(fields, names, field), padding.PKCS1v15(), hashes.SHA256())
    return field + base64.b64encode(signature) + b"\r\n" + message


def _tags(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(";"):
        name, eq, val = part.partition("=")
        if eq and name.strip() and name.strip() not in out:
            out[name.strip()] = re.sub(r"\s+", "", val) if name.strip() in ("b", "bh", "h") \
                else val.strip()
    return out


@dataclass(frozen=True)
class DkimFacts:
    """The first DKIM-Signature of a message, as far as it can be checked without DNS."""

    domain: str | None  # d=
    selector: str | None  # s=
    algorithm: str | None  # a=
    signed_headers: tuple[str, ...]
    body_hash_ok: bool
    problems: tuple[str, ...]


def _signature_field(message: bytes) -> tuple[list[bytes], bytes, bytes | None]:
    fields, body = _split(message)
    for field in fields:
        if field.partition(b":")[0].strip().lower() == b"dkim-signature":
            return fields, body, field
    return fields, body, None


def inspect_signature(message: bytes) -> DkimFacts | None:
    """The facts of the message's DKIM signature, or None when it has none."""
    _, body, field = _signature_field(message)
    if field is None:
        return None
    tags = _tags(field.partition(b":")[2].replace(b"\r\n", b"").decode("latin-1"))
    problems = [f"no {t}= tag (RFC 6376 §3.5)" for t in _REQUIRED_TAGS if t not in tags]
    if "l" in tags:
        problems.append("uses l= (RFC 8460 §5.3: MUST NOT limit the signed body length)")
    names = tuple(n.strip().lower() for n in tags.get("h", "").split(":") if n.strip())
    if "h" in tags and "from" not in names:
        problems.append("From is not signed (RFC 6376 §5.4)")
    relaxed = tags.get("c", "simple/simple").partition("/")[2] == "relaxed"
    ok = tags.get("bh") == _body_hash(body, relaxed)
    if "bh" in tags and not ok:
        problems.append("body hash does not match the body received")
    return DkimFacts(tags.get("d"), tags.get("s"), tags.get("a"), names, ok, tuple(problems))


def verify(message: bytes, public_key: rsa.RSAPublicKey) -> bool:
    """Whether the first DKIM-Signature (rsa-sha256, relaxed headers) holds under `public_key`."""
    fields, body, field = _signature_field(message)
    if field is None:
        return False
    facts = inspect_signature(message)
    tags = _tags(field.partition(b":")[2].replace(b"\r\n", b"").decode("latin-1"))
    if facts is None or facts.problems or not tags.get("c", "").startswith("relaxed"):
        return False
    try:
        public_key.verify(base64.b64decode(tags["b"]),
                          _signed_data(fields, list(facts.signed_headers), field),
                          padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True
