"""A validating resolver for the real DANE senders (DESIGN §9, issue 16): Debian's unbound,
trusting only the lab's anchor (`LabEnv.trust_anchor_file`) and asking only the lab's DNS, so
an unmodified MTA sees the AD bit exactly as on the internet.

`make real-setup` unpacks unbound (and libprotobuf-c, its one library Debian 12 lacks by
default) into the data folder's `unbound/` with `apt-get download` + `dpkg -x`, as for Exim: installing the
package would start a system resolver on the machine. An installed `unbound` works as well.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from ...errors import SenderError
from ..env import LabEnv
from .base import kill_and_wait, real_root, wait_port

ROOT_VAR = "DOWNGRADE_LAB_UNBOUND_ROOT"  # where the packages were unpacked (default .real/unbound)
START_S = 10.0
# Where the DANE senders' resolver listens in the isolated namespace: beside the lab DNS
# (127.0.0.53), on no address of the topology (lab/harness/topology.py)
UNBOUND_ADDRESS = "127.0.0.54"


def _root() -> Path:
    given = os.environ.get(ROOT_VAR)
    return Path(given) if given else real_root() / "unbound"


def binary() -> tuple[Path, dict[str, str]] | None:
    """The unbound binary and the environment it needs, or None when there is none."""
    unpacked = _root() / "usr" / "sbin" / "unbound"
    if unpacked.is_file() and os.access(unpacked, os.X_OK):
        libs = _root() / "usr" / "lib" / "x86_64-linux-gnu"
        return unpacked, {**os.environ, "LD_LIBRARY_PATH": str(libs)}
    found = shutil.which("unbound") or ("/usr/sbin/unbound" if Path("/usr/sbin/unbound").is_file()
                                        else None)
    return (Path(found), dict(os.environ)) if found else None


def available() -> tuple[bool, str]:
    if binary() is None:
        return False, "unbound not found: make real-setup unpacks it into the data folder"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False, "unshare and mount (util-linux) are needed for a private resolv.conf"
    return True, ""


def config(listen: tuple[str, int], upstream: tuple[str, int], anchor_file: Path,
           folder: Path) -> str:
    """unbound.conf: one listener, the lab zone `test.` from the lab DNS only, no cache (every
    step must see the zone as it is now), the lab anchor as the only trust anchor."""
    host, port = listen
    up_host, up_port = upstream
    return f"""server:
  interface: {host}@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{folder}"
  pidfile: ""
  use-syslog: no
  logfile: "{folder}/unbound.log"
  verbosity: 1
  val-log-level: 2
  do-ip6: no
  do-not-query-localhost: no
  # RFC 6761 reserves test.; unbound serves it as an empty local zone unless told not to
  local-zone: "test." nodefault
  trust-anchor-file: "{anchor_file}"
  module-config: "validator iterator"
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
  msg-cache-size: 0
  rrset-cache-size: 0
  key-cache-size: 0
  qname-minimisation: no
stub-zone:
  name: "test."
  stub-addr: {up_host}@{up_port}
"""


class Unbound:
    """One unbound process for one lab; `start()` returns when it answers on `listen`."""

    def __init__(self, env: LabEnv, listen: tuple[str, int], folder: Path) -> None:
        if env.trust_anchor_file is None:
            raise SenderError("unbound: the lab signs nothing (no [dane] table): no trust anchor")
        self.env = env
        self.listen = listen
        self.folder = folder
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        found = binary()
        if found is None:
            raise SenderError("unbound: not installed (make real-setup unpacks it into the data folder)")
        path, environ = found
        assert self.env.trust_anchor_file is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "unbound.conf"
        conf.write_text(config(self.listen, (self.env.dns_host, self.env.dns_port),
                               self.env.trust_anchor_file, self.folder))
        self._proc = await asyncio.create_subprocess_exec(
            str(path), "-c", str(conf), env=environ, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await wait_port(*self.listen, START_S, self._proc, "unbound")
        except BaseException:
            await self.stop()
            raise

    async def restart(self) -> None:
        """A fresh process, so nothing of the last step survives: unbound keeps even TTL-0
        keys and answers to the end of the current second, and the next step may change the
        zone within it (a signed step followed by its no-DNSSEC twin)."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        """Idempotent."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            await kill_and_wait(proc)


def private_resolv_conf(folder: Path) -> list[str]:
    """A command prefix that runs its command in a mount namespace of its own whose
    /etc/resolv.conf names the DANE resolver with `options trust-ad` (glibc passes the AD bit
    on only then). The lab's other senders keep the namespace's plain resolv.conf."""
    resolv = folder / "resolv.conf"
    resolv.write_text(f"nameserver {UNBOUND_ADDRESS}\noptions trust-ad timeout:1 attempts:2\n")
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(resolv)]
