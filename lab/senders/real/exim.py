"""`exim`: Exim 4 with its default opportunistic TLS (DESIGN §5, issue 4; REAL-SENDERS.md).

Debian's exim4 packages conflict with postfix under apt, so `make real-setup` unpacks them
(`apt-get download` + `dpkg -x`) into `.real/exim`; the binary needs the `Debian-exim` user.
Each scenario gets its own configuration, spool and log folder; every delivery is one-shot in
the foreground (`exim4 -C CONF -odf`), so when the command returns the mainlog already holds
Exim's verdict: `=>` delivered (`X=TLS1.3:... CV=yes` when over verified TLS), `==` deferred,
`**` bounced. Exim exits 0 even on a defer, so only the log tells. Between steps the spool and
the retry database are cleared, so a deferral never turns into "retry time not reached".
Exim has no MTA-STS (it has DANE); it is here as the other common opportunistic default.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from pathlib import Path

from ...errors import SenderError
from ..base import Message, SendReport, remaining
from ..env import LabEnv
from .base import LogTail, SenderTimeout, export_ca, make_workdir, real_root, require_isolated, run
from .unbound import UNBOUND_ADDRESS, Unbound, private_resolv_conf
from .unbound import available as dane_available

EXIM_USER = "Debian-exim"
ROOT_VAR = "DOWNGRADE_LAB_EXIM_ROOT"  # where the packages were unpacked (default .real/exim)
# One delivery line of the mainlog: `<id> => rcpt R=... T=... H=host [ip] X=TLS... CV=yes ...`
_LINE = re.compile(r"^\S+ \S+ (?P<id>[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}) "
                   r"(?P<flag><=|=>|==|\*\*|->) (?P<rest>.*)$")
# Exim's log flag -> the SendReport state. Invariant: every value is a SenderState.
FLAGS = {"=>": "delivered", "->": "delivered", "==": "deferred", "**": "bounced"}


def exim_root() -> Path:
    env = os.environ.get(ROOT_VAR)
    if env:
        return Path(env)
    return real_root() / "exim"


def exim_binary() -> Path:
    return exim_root() / "usr" / "sbin" / "exim4"


def config(folder: Path, binary: Path, ca_file: Path, dane: bool = False) -> str:
    """A minimal Exim configuration: route everything by DNS MX, deliver with the smtp
    transport's defaults (TLS when offered, plaintext when not or when it fails), verify
    certificates against the lab CA only to log `CV=yes|no`. `dane`: DNSSEC-validated lookups
    (the DO bit, the resolver's AD bit) and DANE wherever secure TLSA records exist."""
    text = _CONFIG.format(binary=binary, folder=folder, user=EXIM_USER, ca_file=ca_file)
    if dane:
        text = text.replace("disable_ipv6 = true\n", "disable_ipv6 = true\ndns_dnssec_ok = 1\n")
        text = text.replace("  self = send\n", "  self = send\n  dnssec_request_domains = *\n")
        text = text.replace("  tls_try_verify_hosts = *\n", "  tls_try_verify_hosts = *\n"
                            "  dnssec_request_domains = *\n  hosts_try_dane = *\n")
    return text


_CONFIG = """# written by Downgrade Lab for one scenario
exim_path = {binary}
primary_hostname = sender.test
qualify_domain = sender.test
spool_directory = {folder}/spool
log_file_path = {folder}/log/%slog
exim_user = {user}
exim_group = {user}
trusted_users = root
keep_environment =
disable_ipv6 = true
message_logs = false
log_selector = +tls_certificate_verified +tls_peerdn +smtp_confirmation +received_recipients

begin routers

dnslookup:
  driver = dnslookup
  transport = remote_smtp
  # the lab's hosts live on 127/8 inside the namespace: nothing to ignore, send to them
  ignore_target_hosts = <; 0.0.0.0
  self = send
  no_more

begin transports

remote_smtp:
  driver = smtp
  port = 25
  connect_timeout = 5s
  command_timeout = 10s
  tls_verify_certificates = {ca_file}
  tls_try_verify_hosts = *

begin retry

*   *   F,1h,1m

begin rewrite
"""


def parse(lines: list[str], mail_from: str) -> tuple[str, str, str] | None:
    """(state, Exim's own words, TLS facts) of the last message from `mail_from` in the
    mainlog `lines`, or None when Exim logged no delivery result for it."""
    ids = [m.group("id") for m in map(_LINE.match, lines)
           if m and m.group("flag") == "<=" and m.group("rest").startswith(mail_from + " ")]
    if not ids:
        return None
    result = None
    for m in map(_LINE.match, lines):
        if m and m.group("id") == ids[-1] and m.group("flag") in FLAGS:
            rest = m.group("rest")
            tls = re.search(r"X=(\S+)(?: CV=(\w+))?", rest)
            facts = (f"TLS {tls.group(1)} CV={tls.group(2) or '-'}" if tls else "no TLS")
            result = (FLAGS[m.group("flag")], rest, facts)
    return result


class EximSender:
    """Exim 4.9x from Debian, unpacked, opportunistic TLS."""

    name = "exim"
    capabilities: frozenset[str] = frozenset({"queue-state"})
    dane = False

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not os.access(exim_binary(), os.X_OK):
            return False, (f"{exim_binary()} not found: unpack Debian's exim4 (make real-setup, or "
                           "downgrade-lab setup-senders)")
        try:
            pwd.getpwnam(EXIM_USER)
        except KeyError:
            return False, f"the {EXIM_USER} user is missing (make real-setup creates it)"
        if cls.dane:
            return dane_available()
        return True, ""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._log: LogTail | None = None
        self._unbound: Unbound | None = None
        self._wrap: list[str] = []  # exim-dane: the private-resolv.conf prefix

    async def start(self, env: LabEnv) -> None:
        require_isolated(env, self.name)
        folder = self._dir = make_workdir(self.name)
        try:
            ca = export_ca(env, folder)
            uid = pwd.getpwnam(EXIM_USER)
            for sub in ("spool", "log"):
                (folder / sub).mkdir(mode=0o750)
                os.chown(folder / sub, uid.pw_uid, uid.pw_gid)
            (folder / "exim.conf").write_text(config(folder, exim_binary(), ca, self.dane))
            self._log = LogTail(folder / "log" / "mainlog")
            if self.dane and env.trust_anchor_file is not None:  # else all insecure, as postfix-dane
                self._unbound = Unbound(env, (UNBOUND_ADDRESS, 53), folder / "unbound")
                await self._unbound.start()
                self._wrap = private_resolv_conf(folder)
        except BaseException:
            await self.stop()
            raise

    async def send(self, message: Message, deadline: float) -> SendReport:
        if self._dir is None or self._log is None:
            raise SenderError("exim: send() before start()")
        self._clear_state()
        self._log.skip()
        if self._unbound is not None:
            await self._unbound.restart()
        try:
            done = await run([*self._wrap, str(exim_binary()), "-C", str(self._dir / "exim.conf"), "-odf",
                              "-oi", "-f", message.mail_from, message.rcpt_to], stdin=message.data,
                             timeout_s=max(1.0, remaining(deadline)), check=False, what="exim")
        except SenderTimeout as exc:
            self._clear_state()
            return SendReport("unknown", f"{exc} (killed at the step's deadline)")
        lines = self._log.read()
        verdict = parse(lines, message.mail_from)
        log = [line.split(" ", 2)[-1] for line in lines]
        if verdict is None:
            why = done.out.strip().splitlines()[-1:] or ["no result in the mainlog"]
            return SendReport("unknown", f"exim (exit {done.code}): {why[0]}", {"mainlog": log})
        state, words, tls = verdict
        self._clear_state()
        return SendReport(state, words, {"mainlog": log, "tls": tls})  # type: ignore[arg-type]

    def _clear_state(self) -> None:
        """Forget queued messages and retry hints: each step starts as the first."""
        assert self._dir is not None
        spool = self._dir / "spool"
        for sub in ("input", "msglog"):
            shutil.rmtree(spool / sub, ignore_errors=True)
        for hint in (spool / "db").glob("retry*") if (spool / "db").exists() else ():
            hint.unlink(missing_ok=True)

    async def stop(self) -> None:
        folder, self._dir = self._dir, None
        self._log = None
        resolver, self._unbound = self._unbound, None
        if resolver is not None:
            await resolver.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


class EximDaneSender(EximSender):
    """Exim with DANE (RFC 7672): `dnssec_request_domains` and `hosts_try_dane`, resolving
    through unbound and the lab's anchor."""

    name = "exim-dane"
    dane = True
