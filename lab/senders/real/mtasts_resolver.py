"""postfix-mta-sts-resolver's `mta-sts-daemon` (PyPI; the `real` extra) for the
`postfix-mta-sts` adapters: Postfix asks it for a TLS policy per destination through
`smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:ZONE`.

Each pair starts its own daemon, so every scenario starts with a cold cache (its cache is in
memory). The daemon is forked from a server that has imported it once (`forkserver`): its
`main()` runs unmodified in a new process, without 0.35 s of imports each time.

Facts from REAL-SENDERS.md: `cache_grace: 0` (otherwise no lookup for 60 s after a
fetch); stop with SIGKILL and wait for the exit (SIGTERM waits for Postfix's open socketmap
connections, about 4 s), so the port is free again before the next one starts (1.5.1 fails
at start with `reuse_port: false`, so it keeps its default, true); it reads SSL_CERT_FILE
(aiohttp's default context) and /etc/resolv.conf (aiodns), and honours proxy variables,
which we drop.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from ...errors import SenderError
from ..env import LabEnv
from .base import kill_and_wait, one_line, sender_environ, wait_port
from .forkserver import Forked, script_interpreter, spawn

HOST = "127.0.0.1"
PORT = 8461
READY_S = 10.0
FETCH_TIMEOUT_S = 4  # the daemon's own DNS + HTTPS budget per lookup
STRICT_ZONE = "strict"  # socketmap name that selects strict_testing
DEFAULT_ZONE = "postfix"  # any other name: the default zone
ENTRY = ("postfix_mta_sts_resolver.daemon", "main")  # what the console script calls
CONFIG = f"""# written by Downgrade Lab for one scenario
host: {HOST}
port: {PORT}
cache_grace: 0
cache:
  type: internal
  options:
    cache_size: 1000
default_zone:
  strict_testing: false
  timeout: {FETCH_TIMEOUT_S}
zones:
  {STRICT_ZONE}:
    strict_testing: true
    timeout: {FETCH_TIMEOUT_S}
"""


def daemon_path() -> str | None:
    """`mta-sts-daemon` beside our interpreter (the project venv), else on PATH."""
    beside = Path(sys.executable).parent / "mta-sts-daemon"
    if beside.exists():
        return str(beside)
    return shutil.which("mta-sts-daemon")


def available() -> tuple[bool, str]:
    if daemon_path() is None:
        return False, ("mta-sts-daemon not found: pip install 'downgrade-lab[real]' "
                       "(downgrade-lab setup-senders)")
    return True, ""


def policy_map(strict: bool) -> str:
    """The smtp_tls_policy_maps value for Postfix."""
    return f"socketmap:inet:{HOST}:{PORT}:{STRICT_ZONE if strict else DEFAULT_ZONE}"


class ResolverDaemon:
    """One `mta-sts-daemon` process with the lab's settings, its log in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "mta-sts-daemon.log"
        self._proc: asyncio.subprocess.Process | Forked | None = None

    async def start(self, env: LabEnv, ca_file: Path) -> None:
        path = daemon_path()
        if path is None:
            raise SenderError(available()[1])
        config = self.folder / "mta-sts.yml"
        config.write_text(CONFIG)
        errors = self.folder / "mta-sts-daemon.err"  # a crash at start goes here, not to the log
        argv = [path, "-c", str(config), "-l", str(self.log), "-v", "info"]
        environ = sender_environ(env, ca_file)
        python = script_interpreter(path)
        if python is not None:
            self._proc = await asyncio.to_thread(spawn, python, *ENTRY, ca_file, argv, environ,
                                                 errors)
        else:
            with errors.open("wb") as err:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv, env=environ, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=err)
        try:
            await wait_port(HOST, PORT, READY_S, self._proc, "mta-sts-daemon")
        except SenderError as exc:
            await self.stop()
            tail = one_line(errors.read_text()) or (one_line(self.log.read_text())
                                                    if self.log.exists() else "")
            raise SenderError(f"{exc}{': ' + tail if tail else ''}") from None

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await kill_and_wait(proc)
