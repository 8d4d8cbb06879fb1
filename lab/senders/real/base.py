"""What every real-sender adapter shares (DESIGN §5, issue 4): the environment a sender
process gets, its private work folder, subprocesses with one-line errors, and log tailing.

Real senders run only in the isolated topology: they resolve through /etc/resolv.conf and
connect to port 25, which only the lab's own namespace points at the lab.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from msgspec import Struct

from ...errors import SenderError
from ..env import LabEnv

# Variables that would send a sender through a proxy or make it trust the machine's CAs
# instead of (or besides) the lab's. This machine exports SSL_CERT_FILE and friends globally.
DROPPED_VARS = frozenset({
    "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "socks_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY", "SOCKS_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "NIX_SSL_CERT_FILE", "AWS_CA_BUNDLE", "HTTPLIB2_CA_CERTS",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "PIP_CERT", "GIT_SSL_CAINFO", "NODE_OPTIONS",
})
OUTPUT_MAX = 4000  # bytes of a failing command's output kept for the error line
REAL_ROOT_VAR = "DOWNGRADE_LAB_REAL_ROOT"  # where the unpacked MTAs are (default: the data folder)


class Exits(Protocol):
    """A started program whose exit status shows once it has exited (a subprocess, or one a
    fork server started)."""

    @property
    def returncode(self) -> int | None: ...


class Killable(Exits, Protocol):
    """A started program that can be signalled and waited for (what `kill_and_wait` needs)."""

    pid: int

    def send_signal(self, sig: int) -> None: ...

    async def wait(self) -> int | None: ...


class SenderTimeout(SenderError):
    """A sender's command did not finish in time: the sender's slowness, not a lab fault."""


def require_isolated(env: LabEnv, name: str) -> None:
    """SenderError unless the lab runs in the isolated topology (a real MTA resolves through
    /etc/resolv.conf and connects to port 25: only the namespace points those at the lab)."""
    if env.topology != "isolated":
        raise SenderError(f"{name} is a real MTA: it runs only in the isolated topology "
                          "(downgrade-lab run --isolate)")


def lab_variables(env: LabEnv, ca_file: Path | None = None) -> dict[str, str]:
    """The lab's facts as LAB_* variables (for `command` templates and driver scripts)."""
    ca = str(ca_file or env.ca_file)
    mx = ",".join(f"{host}={ip}:{env.ports.get(host, 25)}"
                  for host, ip in sorted(env.host_addresses.items()))
    return {"LAB_DOMAIN": env.domain, "LAB_DNS": env.dns_host, "LAB_DNS_PORT": str(env.dns_port),
            "LAB_CA_FILE": ca, "LAB_TOPOLOGY": env.topology, "LAB_HOSTS": mx}


def sender_environ(env: LabEnv, ca_file: Path | None = None,
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a sender process: ours without proxies and CA overrides, then the
    lab CA as SSL_CERT_FILE (OpenSSL, Python) and NODE_EXTRA_CA_CERTS (Node), and LAB_*."""
    out = {k: v for k, v in os.environ.items() if k not in DROPPED_VARS}
    ca = str(ca_file or env.ca_file)
    out["SSL_CERT_FILE"] = ca
    out["NODE_EXTRA_CA_CERTS"] = ca
    out.update(lab_variables(env, ca_file))
    out.update(extra or {})
    return out


def real_root() -> Path:
    """The folder where `make real-setup` unpacks the MTAs apt cannot install beside Postfix
    (Exim, OpenSMTPD): $DOWNGRADE_LAB_REAL_ROOT, else the per-user data folder that
    `downgrade-lab setup-senders` and `make real-setup` fill (never site-packages)."""
    from .datadir import data_dir

    env = os.environ.get(REAL_ROOT_VAR)
    if env:
        return Path(env)
    return data_dir()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for a daemon's own listener: the isolated run has the
    namespace to itself, so nobody takes it before the daemon binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_workdir(prefix: str) -> Path:
    """A private folder under TMPDIR (the isolated run's own folder, removed when it ends).
    0711: daemons that drop root to their own user (postfix, Debian-exim) traverse it. Keep
    `prefix` short: Postfix's unix sockets live below it (107-byte path limit)."""
    path = Path(tempfile.mkdtemp(prefix=f"dgl-{prefix}-"))
    path.chmod(0o711)
    return path


def export_ca(env: LabEnv, folder: Path) -> Path:
    """A world-readable copy of the lab CA bundle (the lab's own is 0600 in a 0700 folder,
    out of reach of a daemon running as its own user)."""
    target = folder / "lab-ca.pem"
    shutil.copyfile(env.ca_file, target)
    target.chmod(0o644)
    return target


def one_line(text: str | bytes, limit: int = 300) -> str:
    """The last non-empty line of `text`, cut at `limit` characters: for error messages."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[:limit] + "..."


class Done(Struct, frozen=True):
    """A finished command: its exit status and what it printed."""

    code: int
    out: str  # stdout and stderr together


async def run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdin: bytes | None = None, timeout_s: float = 15.0, check: bool = True,
              what: str = "", output: bool = True) -> Done:
    """Run `cmd` to its end; with `check`, a non-zero exit is a SenderError naming `what`.
    `output=False` for commands that leave a daemon behind: it would inherit the output pipe
    and keep it open, and reading to its end would wait on the daemon."""
    sink = asyncio.subprocess.PIPE if output else asyncio.subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=sink, stderr=asyncio.subprocess.STDOUT if output else sink)
    except OSError as exc:
        raise SenderError(f"{what or cmd[0]}: cannot run {cmd[0]}: {exc.strerror}") from None
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SenderTimeout(f"{what or cmd[0]}: {Path(cmd[0]).name} did not finish in "
                            f"{timeout_s:.1f} s") from None
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    text = out[-OUTPUT_MAX:].decode("utf-8", "replace") if out else ""
    code = proc.returncode if proc.returncode is not None else -1
    if check and code != 0:
        raise SenderError(f"{what or cmd[0]}: {' '.join(cmd[:2])} failed (exit {code}): "
                          f"{one_line(text) or 'no output'}")
    return Done(code, text)


async def kill_and_wait(proc: Killable, timeout_s: float = 5.0) -> None:
    """SIGKILL `proc` and reap it (a daemon's graceful stop can wait on its clients)."""
    if proc.returncode is None:
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            async with asyncio.timeout(timeout_s):
                await proc.wait()
        except TimeoutError:
            raise SenderError(f"process {proc.pid} did not exit after SIGKILL") from None


class LogTail:
    """Complete lines appended to a log file since the last `read()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def skip(self) -> None:
        """Forget what is there now: later reads return only what comes after."""
        try:
            self._offset = self.path.stat().st_size
        except FileNotFoundError:
            self._offset = 0
        self._partial = b""

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]


async def wait_port(host: str, port: int, deadline_s: float, proc: Exits,
                    what: str) -> None:
    """Wait until something accepts on host:port (a daemon's readiness), or fail in one line
    when `proc` exits first or the time runs out."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if proc.returncode is not None:
                raise SenderError(f"{what} exited with status {proc.returncode} at start") from None
            if loop.time() >= end:
                raise SenderError(f"{what} did not listen on {host}:{port} within "
                                  f"{deadline_s:g} s") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return


class OneShotSender:
    """Base of the senders that run one program per message (`command`, `mailauth`) from a
    private folder holding a world-readable copy of the lab CA and each message as a file."""

    name = "one-shot"

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._environ: dict[str, str] = {}
        self._count = 0

    async def _open(self, env: LabEnv, extra: Mapping[str, str] | None = None) -> Path:
        """Make the folder and the program's environment (sender_environ + LAB_WORKDIR)."""
        require_isolated(env, self.name)
        folder = self._dir = make_workdir(self.name)
        try:
            self._environ = sender_environ(env, export_ca(env, folder),
                                           {"LAB_WORKDIR": str(folder), **(extra or {})})
        except BaseException:
            await self.stop()
            raise
        return folder

    def _message_file(self, data: bytes) -> Path:
        """The next message, written to the folder for the program to read."""
        if self._dir is None:
            raise SenderError(f"{self.name}: send() before start()")
        self._count += 1
        path = self._dir / f"message-{self._count}.eml"
        path.write_bytes(data)
        return path

    async def stop(self) -> None:
        folder, self._dir = self._dir, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
