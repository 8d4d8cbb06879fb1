"""The lab's private PKI: a CA made by trustme and every certificate a scenario needs.

Variants (DESIGN §4 `cert`): `valid` (lab CA, SAN = the host), `expired` (lab CA, not_after in
the past), `wrong-name` (lab CA, SAN = another name), `untrusted` (a second CA that no bundle
trusts) and `self-signed`. Private keys are written 0600 inside a private (0700) temp dir that
`close()` removes.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import ssl
import tempfile
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..core.model import CERT_VARIANTS
from ..errors import LabError

if TYPE_CHECKING:
    from ..core.dnssec import LabKeys

WRONG_NAME = "wrong-name.invalid"


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _self_signed(host: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class PKI:
    """The lab CA plus a cache of leaf certificates, keyed by (host, variant)."""

    def __init__(self, parent_dir: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="downgrade-lab-", dir=parent_dir))
        # The keys go with the PKI even if close() is never called: when it is collected, or at
        # interpreter exit (a crashed run, a script that forgot).
        self._remove = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        os.chmod(self.dir, 0o700)
        self._ca = trustme.CA(organization_name="Downgrade Lab CA")
        self._rogue_ca: trustme.CA | None = None
        self.ca_file = self.dir / "lab-ca.pem"
        self.ca_file.write_bytes(self._ca.cert_pem.bytes())
        self._files: dict[tuple[str, str], tuple[Path, Path]] = {}
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._listeners: dict[tuple[str, str, tuple[str, ...]], ssl.SSLContext] = {}
        # The server name each TLS connection to a listener context sent, kept while it lives.
        self._sni: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()
        self._dnssec: LabKeys | None = None
        self._closed = False

    def dnssec_keys(self) -> LabKeys:
        """The DNSSEC keys that go with this PKI, made on first use (a signed scenario's):
        fresh for every PKI, as the lab CA is, and shared like it by the labs of one run, so
        that a zone signed once is served to every pair that asks for it (`signed_zone`)."""
        if self._dnssec is None:
            from ..core.dnssec import LabKeys

            self._dnssec = LabKeys(born=time.time())
        return self._dnssec

    def cert_files(self, host: str, variant: str = "valid") -> tuple[Path, Path]:
        """(certificate chain PEM, private key PEM) for `host` in `variant`."""
        if variant not in CERT_VARIANTS:
            raise LabError(f"unknown certificate variant {variant!r} (allowed: {', '.join(CERT_VARIANTS)})")
        if self._closed:
            raise LabError("the lab PKI is closed")
        host = host.lower().rstrip(".")
        key = (host, variant)
        if key not in self._files:
            chain, private = self._issue(host, variant)
            stem = f"{host}.{variant}"
            cert_path = self.dir / f"{stem}.crt"
            cert_path.write_bytes(chain)
            key_path = _write_private(self.dir / f"{stem}.key", private)
            self._files[key] = (cert_path, key_path)
        return self._files[key]

    def _issue(self, host: str, variant: str) -> tuple[bytes, bytes]:
        if variant == "self-signed":
            return _self_signed(host)
        ca = self._ca
        not_before: dt.datetime | None = None
        not_after: dt.datetime | None = None
        names = [host]
        if variant == "expired":
            now = dt.datetime.now(dt.UTC)
            not_before, not_after = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        elif variant == "wrong-name":
            names = [WRONG_NAME]
        elif variant == "untrusted":
            if self._rogue_ca is None:
                self._rogue_ca = trustme.CA(organization_name="Untrusted Rogue CA")
            ca = self._rogue_ca
        leaf = ca.issue_cert(*names, common_name=names[0], not_before=not_before,
                             not_after=not_after)
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        if ca is self._ca:
            # The chain ends with the lab CA, as RFC 7672 §3.1.2 asks of a DANE-TA(2) server:
            # a `2 x 1` record names the CA by digest, so the client must be shown it.
            chain += self._ca.cert_pem.bytes()
        return chain, leaf.private_key_pem.bytes()

    def leaf_der(self, host: str, variant: str = "valid") -> bytes:
        """The DER of `host`'s certificate in `variant` (what a TLSA record is computed from)."""
        cert = x509.load_pem_x509_certificate(self.cert_files(host, variant)[0].read_bytes())
        return cert.public_bytes(serialization.Encoding.DER)

    def chain_der(self, host: str, variant: str = "valid") -> list[bytes]:
        """The DER of every certificate a server for `host` in `variant` presents, leaf first."""
        pem = self.cert_files(host, variant)[0].read_bytes()
        return [c.public_bytes(serialization.Encoding.DER)
                for c in x509.load_pem_x509_certificates(pem)]

    def ca_der(self) -> bytes:
        """The DER of the lab CA certificate (a DANE-TA trust anchor)."""
        cert = x509.load_pem_x509_certificate(self._ca.cert_pem.bytes())
        return cert.public_bytes(serialization.Encoding.DER)

    def server_context(self, host: str, variant: str = "valid") -> ssl.SSLContext:
        """A server-side TLS context presenting `host`'s certificate in `variant`."""
        key = (host.lower().rstrip("."), variant)
        if key not in self._contexts:
            cert_path, key_path = self.cert_files(host, variant)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert_path, key_path)
            self._contexts[key] = ctx
        return self._contexts[key]

    def listener_context(self, host: str, variant: str = "valid",
                         alternates: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A server context presenting `host`'s certificate in `variant`, built once per PKI
        and shared by every lab on it (loading a chain costs about 0.7 ms). Its SNI callback
        records the name each connection asked for (`sni_of`) and, when that name is one of
        `alternates`, presents that name's certificate in the same variant instead."""
        host = host.lower().rstrip(".")
        key = (host, variant, alternates)
        if key not in self._listeners:
            cert_path, key_path = self.cert_files(host, variant)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_path, key_path)

            def on_hello(conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                         _ctx: ssl.SSLContext) -> int | None:
                if server_name is None or not isinstance(conn, ssl.SSLObject):
                    return None  # no SNI: the listener's own identity stays
                self._sni[conn] = server_name
                name = server_name.lower().rstrip(".")
                if name in alternates:
                    conn.context = self.listener_context(name, variant, alternates)
                return None

            ctx.sni_callback = on_hello
            self._listeners[key] = ctx
        return self._listeners[key]

    def sni_of(self, conn: ssl.SSLObject) -> str | None:
        """The server name a connection to a `listener_context` sent (None: none)."""
        return self._sni.get(conn)

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the lab CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def close(self) -> None:
        """Remove every key and certificate. Idempotent."""
        self._closed = True
        self._contexts.clear()
        self._listeners.clear()
        self._files.clear()
        self._remove()

    def __enter__(self) -> PKI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
