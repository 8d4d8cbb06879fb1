"""`postfix`, `postfix-mta-sts`, `postfix-mta-sts-strict`: a private Postfix instance per
scenario (DESIGN §5, issue 4; facts in REAL-SENDERS.md).

`postfix -c DIR` with its own queue, `maillog_file`, chroot off (a chrooted smtp(8) would read
`$queue_directory/etc/resolv.conf` instead of the namespace's bind-mounted one), no smtpd
listener, IPv4 only, `smtp_tls_security_level = may`, the lab CA as `smtp_tls_CAfile`. The
MTA-STS variants add postfix-mta-sts-resolver as `smtp_tls_policy_maps`, a fresh daemon per
scenario (cold cache).

Verdict: the message is tagged by its Message-ID; cleanup logs the queue id for it, and the
smtp status line (`status=sent|deferred|bounced (reason)`) is Postfix's own verdict, within
milliseconds. A deferral is confirmed with `postqueue -j` (`delay_reason`), then the queue is
purged so no retry leaks into the next step. Connection caching is off (a cached session from
the previous step would skip the attack under test) and qmgr never marks a destination dead
(a "delivery temporarily suspended" deferral is stale state, not a verdict: we wait on).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import time
from email.parser import BytesHeaderParser
from pathlib import Path

from ...errors import SenderError
from ..base import Message, SendReport, remaining
from ..env import LabEnv
from . import postfixlog
from .base import LogTail, export_ca, make_workdir, require_isolated, run
from .mtasts_resolver import ResolverDaemon, policy_map
from .mtasts_resolver import available as resolver_available
from .unbound import UNBOUND_ADDRESS, Unbound, private_resolv_conf
from .unbound import available as dane_available

POSTFIX_ETC = Path("/etc/postfix")
DAEMON_DIR = Path("/usr/lib/postfix/sbin")  # Debian's daemon_directory
TOOLS = ("postfix", "postconf", "postsuper", "postqueue", "sendmail")
POLL_S = 0.01
SUN_PATH_MAX = 107  # a unix socket path, without its NUL
STOP_S = 5.0
SBIN = ("/usr/sbin", "/usr/bin")


@functools.cache  # the PATH and sbin search, once per tool
def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:  # sbin is not on every PATH; postsuper also wants an absolute path
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return None


def main_cf(folder: Path, ca_file: Path, policy_maps: str | None, dane: bool = False) -> str:
    """The instance's main.cf. Short timeouts and backoffs: the lab answers in milliseconds,
    and a stuck attempt should end within a step's deadline."""
    lines = [
        "compatibility_level = 3.6",
        f"queue_directory = {folder}/queue",
        f"data_directory = {folder}/data",
        f"meta_directory = {POSTFIX_ETC}",
        f"maillog_file = {folder}/maillog",
        f"maillog_file_prefixes = {folder}",
        "myhostname = sender.test", "mydomain = sender.test", "myorigin = sender.test",
        "mydestination =", "relayhost =", "alias_maps =", "alias_database =",
        "inet_interfaces = loopback-only", "inet_protocols = ipv4", "biff = no",
        "smtp_tls_security_level = may",
        f"smtp_tls_CAfile = {ca_file}",
        "smtp_tls_loglevel = 1",
        "smtp_connection_cache_on_demand = no",
        "smtp_connect_timeout = 5s", "smtp_helo_timeout = 8s", "smtp_starttls_timeout = 8s",
        "default_destination_concurrency_failed_cohort_limit = 10000",
        "queue_run_delay = 1s", "minimal_backoff_time = 1s", "maximal_backoff_time = 2s",
        # A fresh instance has no flow-control tokens yet: cleanup would sometimes hold the
        # first message for a whole second.
        "in_flow_delay = 0",
    ]
    if policy_maps:
        lines.append(f"smtp_tls_policy_maps = {policy_maps}")
    if dane:
        # RFC 7672 as Postfix does it: DNSSEC-validated lookups (the AD bit of a resolver
        # trusted through `options trust-ad`), TLSA where secure, `may` elsewhere
        lines[lines.index("smtp_tls_security_level = may")] = "smtp_tls_security_level = dane"
        lines.append("smtp_dns_support_level = dnssec")
        # smtp(8) caches TLSA RRsets for their TTL in whole seconds, so a TTL of 0 still lasts
        # the rest of the second: a new process per delivery sees each step's records
        lines.append("max_use = 1")
    return "\n".join(lines) + "\n"


def master_cf(text: str) -> str:
    """Debian's master.cf with chroot off for every service and the smtpd listener removed
    (the instance only sends; nothing of it should listen)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if line[:1].isspace() or line.startswith("#") or len(fields) < 8:
            out.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            out.append("#" + line)
            continue
        fields[4] = "n"  # chroot column
        out.append("  ".join(fields))
    return "\n".join(out) + "\n"


def queue_dirs(postfix_files: str) -> list[tuple[str, str, str, int]]:
    """(subdir, owner, group, mode) of the queue folders, from Postfix's own postfix-files, so
    no slow `postfix check` is needed per instance."""
    out = []
    for line in postfix_files.splitlines():
        parts = line.split(":")
        if len(parts) < 5 or parts[1] != "d" or not parts[0].startswith("$queue_directory/"):
            continue
        out.append((parts[0].removeprefix("$queue_directory/"), parts[2], parts[3],
                    int(parts[4], 8)))
    return out


def _owner(name: str) -> int | None:
    import grp
    import pwd

    names = {"$mail_owner": "postfix", "$setgid_group": "postdrop", "root": "root"}
    real = names.get(name, name)
    try:
        return pwd.getpwnam(real).pw_uid
    except KeyError:
        try:
            return grp.getgrnam(real).gr_gid
        except KeyError:
            return None


class PostfixSender:
    """Postfix at `smtp_tls_security_level = may`: opportunistic TLS, no MTA-STS."""

    name = "postfix"
    short = "pf"  # work folder prefix: socket paths below it must stay short
    capabilities: frozenset[str] = frozenset({"queue-state"})
    mta_sts = False
    strict = False
    dane = False

    @classmethod
    def available(cls) -> tuple[bool, str]:
        missing = [t for t in TOOLS if _tool(t) is None]
        if missing:
            return False, (f"{', '.join(missing)} not found: install Debian's postfix "
                           "(downgrade-lab setup-senders, as root)")
        if not (POSTFIX_ETC / "master.cf").exists() or not (POSTFIX_ETC / "postfix-files").exists():
            return False, f"{POSTFIX_ETC}/master.cf missing: reinstall Debian's postfix"
        if not os.access(DAEMON_DIR / "master", os.X_OK):
            return False, f"{DAEMON_DIR}/master not found: reinstall Debian's postfix"
        if cls.mta_sts:
            return resolver_available()
        if cls.dane:
            return dane_available()
        return True, ""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._log: LogTail | None = None
        self._daemon: ResolverDaemon | None = None
        self._unbound: Unbound | None = None
        self._running = False

    @property
    def _conf(self) -> str:
        assert self._dir is not None
        return str(self._dir / "conf")

    async def start(self, env: LabEnv) -> None:
        require_isolated(env, self.name)
        folder = self._dir = make_workdir(self.short)
        try:
            await self._start(env, folder)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, env: LabEnv, folder: Path) -> None:
        longest = folder / "queue" / "public" / "postlog"
        if len(bytes(longest)) > SUN_PATH_MAX:
            raise SenderError(f"{self.name}: {folder} is too deep for Postfix's unix sockets "
                              f"({len(bytes(longest))} > {SUN_PATH_MAX} bytes): use a shorter TMPDIR")
        ca = export_ca(env, folder)
        if self.mta_sts:
            self._daemon = ResolverDaemon(folder)
            await self._daemon.start(env, ca)
        conf = folder / "conf"
        conf.mkdir()
        maps = policy_map(self.strict) if self.mta_sts else None
        (conf / "main.cf").write_text(main_cf(folder, ca, maps, self.dane))
        (conf / "master.cf").write_text(master_cf((POSTFIX_ETC / "master.cf").read_text()))
        for name in ("main.cf", "master.cf"):
            # Postfix sleeps in 0.3 s steps while a configuration file is younger than about
            # 2 s (a file still being edited): back-date ours, which are complete.
            past = time.time() - 60
            os.utime(conf / name, (past, past))
        self._make_queue(folder)
        self._log = LogTail(folder / "maillog")
        # master -w directly, as `postfix start` does after its integrity checks: those take
        # seconds (check-warn walks every Postfix file) and the instance is new and well-formed.
        master = [str(DAEMON_DIR / "master"), "-c", self._conf, "-w"]
        if self.dane and env.trust_anchor_file is not None:
            # A lab without [dane] signs nothing: no anchor, so no resolver to validate with;
            # Postfix then finds every answer insecure and `dane` acts as `may`, as on the
            # internet for an unsigned domain.
            master = await self._with_validating_resolver(env, folder, master)
        done = await run(master, env={**os.environ, "MAIL_CONFIG": self._conf}, check=False,
                         output=False)
        if done.code != 0:
            # Without a terminal `postfix` prints nothing; its maillog says why.
            why = [line for line in self._log.read() if "fatal" in line or "error" in line]
            raise SenderError(f"{self.name}: postfix start failed: "
                              f"{(why or [done.out.strip() or 'see ' + str(folder / 'maillog')])[-1]}")
        self._running = True
        self._log.skip()

    async def _with_validating_resolver(self, env: LabEnv, folder: Path,
                                        master: list[str]) -> list[str]:
        """Start unbound with the lab's anchor, and run `master` in a mount namespace of its own
        whose /etc/resolv.conf names it with `options trust-ad` (glibc hands Postfix the AD
        bit only then). The lab's other senders keep the namespace's plain resolv.conf."""
        self._unbound = Unbound(env, (UNBOUND_ADDRESS, 53), folder / "unbound")
        await self._unbound.start()
        return [*private_resolv_conf(folder), *master]

    def _make_queue(self, folder: Path) -> None:
        (folder / "data").mkdir()
        os.chown(folder / "data", _owner("postfix") or 0, -1)
        queue = folder / "queue"
        queue.mkdir(mode=0o755)
        for sub, owner, group, mode in queue_dirs((POSTFIX_ETC / "postfix-files").read_text()):
            path = queue / sub
            path.mkdir()
            path.chmod(mode)
            gid = _owner(group) if group != "-" else None
            os.chown(path, _owner(owner) or 0, gid if gid is not None else -1)

    async def send(self, message: Message, deadline: float) -> SendReport:
        if not self._running or self._log is None:
            raise SenderError(f"{self.name}: send() before start()")
        message_id = _message_id(message)
        if self._unbound is not None:
            await self._unbound.restart()
        await run([_tool("sendmail") or "sendmail", "-C", self._conf, "-i", "-f",
                   message.mail_from, message.rcpt_to], stdin=message.data,
                  timeout_s=max(1.0, remaining(deadline)), what=f"{self.name}: submission")
        lines: list[str] = []
        qid: str | None = None
        while True:
            lines += self._log.read()
            qid = qid or postfixlog.queue_id(lines, message_id)
            final = [s for s in postfixlog.statuses(lines, qid) if not s.stale] if qid else []
            if final:
                return await self._report(final[-1], lines)
            if time.monotonic() >= deadline:
                await self._purge()
                stale = postfixlog.statuses(lines, qid) if qid else []
                why = f"stale: {stale[-1].reason}" if stale else "no verdict in the maillog yet"
                return SendReport("unknown", f"postfix: {why}", {"queue_id": qid})
            await asyncio.sleep(POLL_S)

    async def _report(self, status: postfixlog.Status, lines: list[str]) -> SendReport:
        extra: dict[str, object] = {"queue_id": status.queue_id, "relay": status.relay,
                                    "tls": list(status.tls),
                                    "maillog": [line for line in lines if status.queue_id in line]}
        if status.state == "deferred":
            extra["postqueue"] = await self._queue_entry(status.queue_id)
            await self._purge()
        return SendReport(status.state, status.summary(), extra)  # type: ignore[arg-type]

    async def _queue_entry(self, qid: str) -> dict[str, object] | None:
        """`postqueue -j` for `qid`: the queue it sits in and Postfix's `delay_reason`."""
        done = await run([_tool("postqueue") or "postqueue", "-c", self._conf, "-j"], check=False)
        for line in done.out.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("queue_id") == qid:
                return {"queue_name": entry.get("queue_name"),
                        "delay_reason": [r.get("delay_reason") for r in entry.get("recipients", [])]}
        return None

    async def _purge(self) -> None:
        """Delete every queued message: no retry may reach the next step or scenario."""
        postsuper = _tool("postsuper") or "/usr/sbin/postsuper"
        await run([postsuper, "-c", self._conf, "-d", "ALL"], check=False)

    async def stop(self) -> None:
        """Stop Postfix and the resolver daemon, wait for them, remove the instance. Idempotent."""
        folder, self._dir = self._dir, None
        if folder is None:
            return
        try:
            if self._running:
                self._running = False
                await self._stop_postfix(folder)
        finally:
            daemon, self._daemon = self._daemon, None
            if daemon is not None:
                await daemon.stop()
            resolver, self._unbound = self._unbound, None
            if resolver is not None:
                await resolver.stop()
            shutil.rmtree(folder, ignore_errors=True)

    async def _stop_postfix(self, folder: Path) -> None:
        pid = _master_pid(folder)
        if pid is None:
            return
        # What `postfix stop` does, minus its polling in whole seconds: SIGTERM to the master,
        # which stops its children and exits; we watch it go in POLL_S steps.
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.monotonic() + STOP_S
        while _alive(pid):
            if time.monotonic() >= end:
                os.kill(pid, signal.SIGKILL)  # a master that ignores SIGTERM
                break
            await asyncio.sleep(POLL_S)


def _message_id(message: Message) -> str:
    headers = BytesHeaderParser().parsebytes(message.data)
    value = (headers.get("Message-ID") or "").strip()
    if not value:
        raise SenderError("postfix: the message has no Message-ID to find it by")
    return value.strip("<>")


def _master_pid(folder: Path) -> int | None:
    try:
        return int((folder / "queue" / "pid" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): it has exited, it only waits for its parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class PostfixMtaStsSender(PostfixSender):
    """Postfix with postfix-mta-sts-resolver (`strict_testing` off)."""

    name = "postfix-mta-sts"
    short = "pfm"
    capabilities: frozenset[str] = frozenset({"mta-sts", "queue-state"})
    mta_sts = True


class PostfixMtaStsStrictSender(PostfixMtaStsSender):
    """Postfix with postfix-mta-sts-resolver, `strict_testing: true` (testing as enforce)."""

    name = "postfix-mta-sts-strict"
    short = "pfs"
    strict = True


class PostfixDaneSender(PostfixSender):
    """Postfix with DANE (RFC 7672): `smtp_dns_support_level = dnssec`,
    `smtp_tls_security_level = dane`, resolving through unbound and the lab's anchor."""

    name = "postfix-dane"
    short = "pfd"
    dane = True
