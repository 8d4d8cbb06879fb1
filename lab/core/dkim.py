"""DKIM (RFC 6376) for TLS reports by mail (RFC 8460 §5.3, R-03), on top of dkimpy: the
reference sender signs its reports (rsa-sha256, relaxed/relaxed), and the collector verifies
the signature in full.

The lab's DNS serves the test domains, not the submitter's, so the signer `publish()`es its key
in a per-process table of `SELECTOR._domainkey.DOMAIN` TXT records; the verifier's `dnsfunc`
reads that table. A signature whose key was never published fails as a missing key would.
No I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                  "tls-report-domain", "tls-report-submitter")
_CANON = (b"relaxed", b"relaxed")
_PUBLISHED: dict[str, bytes] = {}  # "s._domainkey.d" -> its TXT record; see publish()


@cache
def lab_key() -> rsa.RSAPrivateKey:
    """One RSA-2048 key per process (RFC 8301: at least 1024 bits, 2048 recommended)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_record(key: rsa.RSAPublicKey) -> bytes:
    """The DKIM key TXT record for `key` (RFC 6376 §3.6.1), with RFC 8460 §3's service type
    `s=tlsrpt`, which §5.3 says the record SHOULD carry."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(der)


def _name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}".lower().rstrip(".")  # RFC 6376 §3.6.2.1


def publish(domain: str, selector: str, key: rsa.RSAPublicKey) -> None:
    """Publish `key` as the TXT record `selector._domainkey.domain` that `inspect_signature`
    and `verify` look up (the lab's stand-in for the submitter's DNS)."""
    _PUBLISHED[_name(domain, selector)] = key_record(key)


def _dnsfunc(key: rsa.RSAPublicKey | None) -> Callable[..., bytes | None]:
    """dkimpy's TXT lookup: `key`'s record for any name when given, else the published table."""
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        if key is not None:
            return key_record(key)
        return _PUBLISHED.get(name.decode("ascii", "replace").lower().rstrip("."))
    return lookup


def sign(message: bytes, *, domain: str, selector: str,
         key: rsa.RSAPrivateKey | None = None) -> bytes:
    """`message` (CRLF line ends) with a DKIM-Signature field prepended: rsa-sha256,
    relaxed/relaxed, the `SIGNED_HEADERS` it has, and no `l=` (RFC 8460 §5.3)."""
    pem = (key or lab_key()).private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption())
    signer = dkim.DKIM(message, tlsrpt=True)  # tlsrpt: dkimpy never writes l=
    present = {name.lower().decode() for name, _ in signer.headers}
    field = signer.sign(selector.encode(), domain.encode(), pem, canonicalize=_CANON,
                        include_headers=[n for n in SIGNED_HEADERS if n in present])
    return bytes(field) + message


@dataclass(frozen=True)
class DkimFacts:
    """The first DKIM-Signature of a message and what is wrong with it."""

    domain: str | None  # d=
    selector: str | None  # s=
    algorithm: str | None  # a=
    signed_headers: tuple[str, ...]  # h=
    body_hash_ok: bool  # bh= matches the body received
    verified: bool  # b= holds under the published key (RFC 6376 §6.1.3)
    problems: tuple[str, ...]


def _text(tags: dict[bytes, bytes], name: bytes) -> str | None:
    value = tags.get(name)
    return None if value is None else value.decode("latin-1")


def _body_hash_ok(body: bytes, tags: dict[bytes, bytes]) -> bool:
    # RFC 6376 §3.7: bh= is the hash of the canonicalized body (no l=: §5.3 forbids it).
    try:
        canon = CanonicalizationPolicy.from_c_value(tags.get(b"c"))
        digest = dkim.HASH_ALGORITHMS[tags[b"a"]](canon.canonicalize_body(body)).digest()
        return bool(digest == base64.b64decode(re.sub(rb"\s+", b"", tags[b"bh"])))
    except (KeyError, ValueError, InvalidCanonicalizationPolicyError):
        return False


def inspect_signature(message: bytes, public_key: rsa.RSAPublicKey | None = None
                      ) -> DkimFacts | None:
    """The facts of the message's first DKIM signature, or None when it has none. The key is
    `public_key` when given, else the one `publish()`ed for the signature's s= and d=."""
    try:
        verifier = dkim.DKIM(message, tlsrpt=True)  # tlsrpt: record s=tlsrpt is accepted
    except dkim.DKIMException as exc:
        return DkimFacts(None, None, None, (), False, False, (f"unreadable header: {exc}",))
    if not verifier.present():
        return None
    problems: list[str] = []
    try:
        verified = bool(verifier.verify(dnsfunc=_dnsfunc(public_key)))
        why = "b= does not match the signed data (RFC 6376 §6.1.3)"
    except dkim.DKIMException as exc:  # a malformed or failing signature (RFC 6376 §6.1.1)
        verified, why = False, str(exc)
    tags: dict[bytes, bytes] = verifier.signature_fields
    name = _name(_text(tags, b"d") or "", _text(tags, b"s") or "")
    if not verified and public_key is None and name not in _PUBLISHED:
        why = f"no key published at {name!r} (RFC 6376 §6.1.2)"
    if not verified:
        problems.append(f"signature does not verify: {why}")
    if b"l" in tags:
        problems.append("uses l= (RFC 8460 §5.3: MUST NOT limit the signed body length)")
    names = tuple(n.strip().lower() for n in (_text(tags, b"h") or "").split(":") if n.strip())
    if b"h" in tags and "from" not in names:
        problems.append("From is not signed (RFC 6376 §5.4)")
    body_ok = _body_hash_ok(verifier.body, tags)
    if b"bh" in tags and not body_ok:
        problems.append("body hash does not match the body received")
    return DkimFacts(_text(tags, b"d"), _text(tags, b"s"), _text(tags, b"a"), names, body_ok,
                     verified, tuple(problems))


def verify(message: bytes, public_key: rsa.RSAPublicKey | None = None) -> bool:
    """Whether the first DKIM-Signature holds (under `public_key`, else the published key) and
    meets RFC 8460 §5.3 (no `l=`, From signed)."""
    facts = inspect_signature(message, public_key)
    return facts is not None and facts.verified and not facts.problems
