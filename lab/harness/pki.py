"""The lab's private PKI: a CA made by trustme and every certificate a scenario needs.

Variants (DESIGN §4 `cert`): `valid` (lab CA, SAN = the host), `expired` (lab CA, not_after in
the past), `wrong-name` (lab CA, SAN = another name), `untrusted` (a second CA that no bundle
trusts) and `self-signed`. Private keys are written 0600 inside a private (0700) temp dir that
`close()` removes.
"""

from __future__ import annotations

import os
import select
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..core.model import CERT_VARIANTS
from ..core.names import name_key
from ..errors import LabError
from .certs import CA_FILE, WRONG_NAME, leaf_paths

if TYPE_CHECKING:
    from ..core.dnssec import LabKeys
    from .certs import Issuer

__all__ = ["PKI", "WRONG_NAME"]

MAKER = Path(__file__).with_name("certs.py")
MAKER_TIMEOUT_S = 30.0  # a maker that has not answered by then is stuck
MAKER_LOG = "maker.log"  # the maker's standard error, in the PKI's folder
PREPARE_MAX = 1000  # certificates asked for ahead at most


class PKI:
    """The lab CA plus a cache of leaf certificates, keyed by (host, variant).

    Made in this process by default (lab/harness/certs.py: trustme and cryptography, imported
    here). With `background=True`, a certificate maker process makes them instead (certs.py as
    a script), while this one goes on: the command's own process starts its PKI before it
    imports the rest of the lab, which takes that long, and never imports trustme and
    cryptography's X.509 at all (about 40 ms of a one-scenario run, docs/performance.md).
    `prepare()` asks for certificates before anything needs them."""

    def __init__(self, parent_dir: str | None = None, *, background: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="downgrade-lab-", dir=parent_dir))
        # The keys go with the PKI even if close() is never called: when it is collected, or at
        # interpreter exit (a crashed run, a script that forgot).
        self._remove = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        os.chmod(self.dir, 0o700)
        self._files: dict[tuple[str, str], tuple[Path, Path]] = {}
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._listeners: dict[tuple[str, str, tuple[str, ...]], ssl.SSLContext] = {}
        # The server name each TLS connection to a listener context sent, kept while it lives.
        self._sni: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()
        self._dnssec: LabKeys | None = None
        self._closed = False
        self._issuer: Issuer | None = None
        self._maker: subprocess.Popen[bytes] | None = None
        self._unread = b""  # what the maker wrote after the answer last read
        self._asked: deque[tuple[str, str]] = deque()  # requests the maker has not answered
        self._pending: set[tuple[str, str]] = set()  # the same, to look one up
        self._answers: dict[tuple[str, str], str] = {}
        self._end: weakref.finalize[..., PKI] | None = None
        if background and MAKER.is_file():
            try:
                # its errors go to a file: a pipe nobody reads could fill and stop it
                with open(self.dir / MAKER_LOG, "wb") as log:
                    self._maker = subprocess.Popen(
                        [sys.executable, "-P", str(MAKER), str(self.dir)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, bufsize=0)
            except OSError:
                self._maker = None
            else:
                self._asked.append(("", "ca"))  # its first answer: the CA is written
                # the maker's own lifetime: it ends when its input does, at close() or with us
                # (at interpreter exit, finalizers run newest first: before the folder goes)
                self._end = weakref.finalize(self, _end_maker, self._maker)
        if self._maker is None:
            self._issuer = _issuer()
            (self.dir / CA_FILE).write_bytes(self._issuer.ca_pem)

    @property
    def ca_file(self) -> Path:
        """The lab CA certificate (PEM), once it exists."""
        if self._maker is not None:
            self._await(("", "ca"))  # its first answer; at once once read
        return self.dir / CA_FILE

    def dnssec_keys(self) -> LabKeys:
        """The DNSSEC keys that go with this PKI, made on first use (a signed scenario's):
        fresh for every PKI, as the lab CA is, and shared like it by the labs of one run, so
        that a zone signed once is served to every pair that asks for it (`signed_zone`)."""
        if self._dnssec is None:
            from ..core.dnssec import LabKeys

            self._dnssec = LabKeys(born=time.time())
        return self._dnssec

    def prepare(self, wanted: Iterable[tuple[str, str]]) -> None:
        """Ask for (host, variant) certificates now, so that a background maker has them
        when they are needed; in this process, nothing is made ahead. Bad names are refused
        either way."""
        keys = [_key(host, variant) for host, variant in wanted]
        if self._maker is not None:
            # At most PREPARE_MAX ahead: the answers wait in a pipe until they are read, and
            # a pipe holds some thousands of them; the rest are made when asked for.
            for key in dict.fromkeys(keys):
                if len(self._asked) >= PREPARE_MAX:
                    break
                self._ask(key)

    def cert_files(self, host: str, variant: str = "valid") -> tuple[Path, Path]:
        """(certificate chain PEM, private key PEM) for `host` in `variant`."""
        key = _key(host, variant)
        if self._closed:
            raise LabError("the lab PKI is closed")
        if key not in self._files:
            if self._issuer is not None:
                self._files[key] = self._issuer.write(self.dir, *key)
            else:
                self._ask(key)
                self._await(key)
                self._files[key] = leaf_paths(self.dir, *key)
        return self._files[key]

    def _ask(self, key: tuple[str, str]) -> None:
        if key in self._answers or key in self._pending:
            return
        assert self._maker is not None and self._maker.stdin is not None
        try:
            self._maker.stdin.write(f"{key[0]} {key[1]}\n".encode("ascii"))
        except (BrokenPipeError, ValueError):
            self._maker_failed()
        self._asked.append(key)
        self._pending.add(key)

    def _await(self, key: tuple[str, str]) -> None:
        """Read the maker's answers, in the order asked, until `key`'s; raise its error."""
        while key not in self._answers:
            if not self._asked:
                raise LabError(f"no certificate was asked for {key[0]} ({key[1]})")
            line = self._read_answer()
            if line is None:
                self._maker_failed()
            answered = self._asked.popleft()
            self._pending.discard(answered)
            self._answers[answered] = line
        answer = self._answers[key]
        if answer.startswith("error"):
            raise LabError(f"cannot make a certificate for {key[0]} ({key[1]}): "
                           f"{answer.removeprefix('error').strip()}")

    def _read_answer(self, timeout: float = MAKER_TIMEOUT_S) -> str | None:
        """The maker's next answer line; None if it ended, or said nothing for `timeout` s."""
        assert self._maker is not None and self._maker.stdout is not None
        fd = self._maker.stdout.fileno()
        while b"\n" not in self._unread:
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                return None
            self._unread += chunk
        line, _, self._unread = self._unread.partition(b"\n")
        return line.decode("ascii", "replace").strip()

    def _maker_failed(self) -> NoReturn:
        assert self._maker is not None
        self._maker.kill()
        self._maker.wait()
        try:
            text = (self.dir / MAKER_LOG).read_text("utf-8", "replace").strip()
        except OSError:
            text = ""
        last = text.splitlines()[-1:] or [f"exit {self._maker.returncode}"]
        raise LabError(f"the certificate maker stopped: {last[0]}")

    def leaf_der(self, host: str, variant: str = "valid") -> bytes:
        """The DER of `host`'s certificate in `variant` (what a TLSA record is computed from)."""
        return self.chain_der(host, variant)[0]

    def chain_der(self, host: str, variant: str = "valid") -> list[bytes]:
        """The DER of every certificate a server for `host` in `variant` presents, leaf first."""
        return _ders(self.cert_files(host, variant)[0].read_text("ascii"))

    def ca_der(self) -> bytes:
        """The DER of the lab CA certificate (a DANE-TA trust anchor)."""
        return _ders(self.ca_file.read_text("ascii"))[0]

    def server_context(self, host: str, variant: str = "valid") -> ssl.SSLContext:
        """A server-side TLS context presenting `host`'s certificate in `variant`."""
        key = (name_key(host), variant)
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
        host = name_key(host)
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
                name = name_key(server_name)
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
        """End the certificate maker, if any, and remove every key and certificate.
        Idempotent. A maker with answers nobody read (still starting, or making certificates
        asked for ahead and never used) is killed: nothing it would still write is wanted."""
        if self._maker is not None and self._asked and self._maker.poll() is None:
            self._maker.kill()
        self._closed = True
        self._contexts.clear()
        self._listeners.clear()
        self._files.clear()
        if self._end is not None:
            self._end()
        self._remove()

    def __enter__(self) -> PKI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _key(host: str, variant: str) -> tuple[str, str]:
    """The cache key of a certificate; a bad variant or host name is refused here."""
    if variant not in CERT_VARIANTS:
        raise LabError(f"unknown certificate variant {variant!r} (allowed: {', '.join(CERT_VARIANTS)})")
    host = name_key(host)
    if not host or not host.isascii() or not host.isprintable() or " " in host or "/" in host:
        raise LabError(f"no certificate can be made for the host name {host!r}")
    return host, variant


def _issuer() -> Issuer:
    from .certs import Issuer

    return Issuer()


def _ders(pem: str) -> list[bytes]:
    """The DER of every certificate in a PEM text, in order."""
    end = "-----END CERTIFICATE-----"
    return [ssl.PEM_cert_to_DER_cert(block.strip() + end) for block in pem.split(end)[:-1]]


def _end_maker(maker: subprocess.Popen[bytes]) -> None:
    """Close the maker's input (it stops at its end) and reap it."""
    try:
        if maker.stdin is not None:
            maker.stdin.close()
        maker.wait(timeout=MAKER_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        maker.kill()
        maker.wait()
    finally:
        if maker.stdout is not None:
            maker.stdout.close()
