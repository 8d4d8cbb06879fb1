"""Issuing the lab's certificates: the lab CA (trustme), a rogue CA and the leaf of every
variant (DESIGN §4 `cert`). `Issuer` works in the process that imports it; run as a script,
this module is the certificate maker of a PKI made in the background (lab/harness/pki.py).

As a script (`python -P certs.py DIR`), it makes the lab CA, writes `DIR/lab-ca.pem` and
answers `ca`; then for every request line `HOST VARIANT` on its standard input it writes
`DIR/HOST.VARIANT.crt` (the chain) and `DIR/HOST.VARIANT.key` (0600) and answers `ok`, or
`error WHY`. At the end of its input (the PKI closed, or its process ended) it exits at once.
It imports nothing of the package (the script's folder is not on its path: `-P`), only trustme
and cryptography, and ignores Ctrl-C: the lab that owns it decides when it stops.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import trustme

WRONG_NAME = "wrong-name.invalid"
CA_FILE = "lab-ca.pem"


def write_private(path: Path, data: bytes) -> Path:
    """Write a private key: created 0600, never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def leaf_paths(folder: Path, host: str, variant: str) -> tuple[Path, Path]:
    """Where the chain and the key of `host` in `variant` are kept."""
    stem = f"{host}.{variant}"
    return folder / f"{stem}.crt", folder / f"{stem}.key"


def _self_signed(host: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

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


class Issuer:
    """The lab CA, made on creation, and the leaves it (or a rogue CA) issues. trustme and
    cryptography are imported here, not with the module: its paths are the PKI's too."""

    def __init__(self) -> None:
        import trustme

        self._ca = trustme.CA(organization_name="Downgrade Lab CA")
        self._rogue_ca: trustme.CA | None = None

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def issue(self, host: str, variant: str) -> tuple[bytes, bytes]:
        """(chain PEM, private key PEM) of `host` (lowercase, no final dot) in `variant`."""
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
                import trustme

                self._rogue_ca = trustme.CA(organization_name="Untrusted Rogue CA")
            ca = self._rogue_ca
        leaf = ca.issue_cert(*names, common_name=names[0], not_before=not_before,
                             not_after=not_after)
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        if ca is self._ca:
            # The chain ends with the lab CA, as RFC 7672 §3.1.2 asks of a DANE-TA(2) server:
            # a `2 x 1` record names the CA by digest, so the client must be shown it.
            chain += self.ca_pem
        return chain, leaf.private_key_pem.bytes()

    def write(self, folder: Path, host: str, variant: str) -> tuple[Path, Path]:
        """Issue `host` in `variant` and write its chain and key (0600) into `folder`."""
        chain, private = self.issue(host, variant)
        cert_path, key_path = leaf_paths(folder, host, variant)
        cert_path.write_bytes(chain)
        write_private(key_path, private)
        return cert_path, key_path


def serve(folder: Path, requests: Iterable[str], answers: TextIO) -> None:
    """The maker's loop: the CA first, then one answer line per request line."""
    issuer = Issuer()
    (folder / CA_FILE).write_bytes(issuer.ca_pem)
    _answer(answers, "ca")
    for line in requests:
        host, _, variant = line.strip().partition(" ")
        try:
            issuer.write(folder, host, variant)
        except Exception as exc:  # noqa: BLE001 - told to the PKI, which raises it as a LabError
            _answer(answers, f"error {' '.join(str(exc).split()) or type(exc).__name__}")
        else:
            _answer(answers, "ok")


def _answer(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Path(sys.argv[1]), sys.stdin, sys.stdout)
    # Every file is closed and every answer flushed: end now, not after the interpreter's
    # teardown, which the PKI's close() would wait for.
    os._exit(0)
