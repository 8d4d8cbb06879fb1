"""DKIM (RFC 6376) for TLS reports by mail (RFC 8460 §5.3, R-03), on top of dkimpy: the
reference sender signs its reports (ed25519-sha256, RFC 8463, relaxed/relaxed; rsa-sha256 for an
RSA key), and the collector verifies the signature in full. Ed25519 because dkimpy signs RSA in
pure Python (a modular exponentiation of about 7 ms per report); PyNaCl signs Ed25519 in C.

The lab's DNS serves the test domains, not the submitter's, so the signer `publish()`es its key
in a per-process table of `SELECTOR._domainkey.DOMAIN` TXT records; the verifier's `dnsfunc`
reads that table. A signature whose key was never published fails as a missing key would.
No I/O.
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from msgspec import Struct

from .names import name_key

if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography.hazmat.primitives.asymmetric import rsa

# dkimpy looks keys up with dnspython's resolver unless the verifier is given a `dnsfunc`, and
# the lab always gives one (the key table below). In the command's own process, which the CLI
# marks by hiding aiodns (lab/frontends/cli.py), dkimpy is imported with dnspython's resolver
# hidden as well, and takes its own fallback (a lookup that raises, never called): a run then
# does not import dnspython at all unless it signs DNS (DANE), about 30 ms of a one-scenario run
# (docs/performance.md). A host that imports the lab keeps dkimpy's DNS lookups.
_HIDE_RESOLVER = sys.modules.get("aiodns", False) is None and "dns.resolver" not in sys.modules
if _HIDE_RESOLVER:
    sys.modules["dns.resolver"] = None  # type: ignore[assignment]
try:
    import dkim
    import nacl.signing  # dkimpy's own Ed25519 (RFC 8463), imported by it as well
    from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
finally:
    if _HIDE_RESOLVER and sys.modules.get("dns.resolver", False) is None:
        del sys.modules["dns.resolver"]

SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                  "tls-report-domain", "tls-report-submitter")
_CANON = (b"relaxed", b"relaxed")
_PUBLISHED: dict[str, bytes] = {}  # "s._domainkey.d" -> its TXT record; see publish()

# The lab's key is Ed25519 in PyNaCl's types, which dkimpy signs and verifies with; an RSA key
# (cryptography's, for tests of rsa-sha256) is the other kind. cryptography is imported only
# for one: a report signed with the lab key does not load it (docs/performance.md).
if TYPE_CHECKING:
    PrivateKey: TypeAlias = nacl.signing.SigningKey | rsa.RSAPrivateKey
    PublicKey: TypeAlias = nacl.signing.VerifyKey | rsa.RSAPublicKey


@cache
def lab_key() -> nacl.signing.SigningKey:
    """One Ed25519 key per process (RFC 8463 §3)."""
    return nacl.signing.SigningKey.generate()


def lab_public_key() -> nacl.signing.VerifyKey:
    """The public half of `lab_key()`, what `publish()` publishes."""
    return lab_key().verify_key


def key_record(key: PublicKey) -> bytes:
    """The DKIM key TXT record for `key` (RFC 6376 §3.6.1; RFC 8463 §4.2: k=ed25519, p= the
    raw 32-byte public key), with RFC 8460 §3's service type `s=tlsrpt`, which §5.3 says the
    record SHOULD carry."""
    if isinstance(key, nacl.signing.VerifyKey):
        return b"v=DKIM1; k=ed25519; s=tlsrpt; p=" + base64.b64encode(bytes(key))
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(der)


def _signing_key(key: PrivateKey) -> tuple[bytes, bytes]:
    """(dkimpy's private key form, a= algorithm) for `key`."""
    if isinstance(key, nacl.signing.SigningKey):  # dkimpy takes the base64 32-byte seed
        return base64.b64encode(bytes(key)), b"ed25519-sha256"
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return pem, b"rsa-sha256"


def _name(domain: str, selector: str) -> str:
    return name_key(f"{selector}._domainkey.{domain}")  # RFC 6376 §3.6.2.1


def publish(domain: str, selector: str, key: PublicKey) -> None:
    """Publish `key` as the TXT record `selector._domainkey.domain` that `inspect_signature`
    and `verify` look up (the lab's stand-in for the submitter's DNS)."""
    _PUBLISHED[_name(domain, selector)] = key_record(key)


def _dnsfunc(key: PublicKey | None) -> Callable[..., bytes | None]:
    """dkimpy's TXT lookup: `key`'s record for any name when given, else the published table."""
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        if key is not None:
            return key_record(key)
        return _PUBLISHED.get(name_key(name.decode("ascii", "replace")))
    return lookup


def sign(message: bytes, *, domain: str, selector: str, key: PrivateKey | None = None) -> bytes:
    """`message` (CRLF line ends) with a DKIM-Signature field prepended: ed25519-sha256 (the
    lab key) or rsa-sha256 (an RSA `key`), relaxed/relaxed, the `SIGNED_HEADERS` it has, and no
    `l=` (RFC 8460 §5.3)."""
    private, algorithm = _signing_key(key or lab_key())
    signer = dkim.DKIM(message, tlsrpt=True)  # tlsrpt: dkimpy never writes l=
    present = {name.lower().decode() for name, _ in signer.headers}
    field = signer.sign(selector.encode(), domain.encode(), private, canonicalize=_CANON,
                        signature_algorithm=algorithm,
                        include_headers=[n for n in SIGNED_HEADERS if n in present])
    return bytes(field) + message


class DkimFacts(Struct, frozen=True):
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


def inspect_signature(message: bytes, public_key: PublicKey | None = None
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
    except ValueError as exc:  # PyNaCl's, for a b= that is no Ed25519 signature (dkimpy lets it out)
        verified, why = False, f"b= does not match the signed data (RFC 6376 §6.1.3): {exc}"
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


def verify(message: bytes, public_key: PublicKey | None = None) -> bool:
    """Whether the first DKIM-Signature holds (under `public_key`, else the published key) and
    meets RFC 8460 §5.3 (no `l=`, From signed)."""
    facts = inspect_signature(message, public_key)
    return facts is not None and facts.verified and not facts.problems
