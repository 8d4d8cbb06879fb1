"""`--sender FILE.toml`: a daemon MTA described by a profile (DESIGN §5, issue 14).

The profile (parsed and checked by lab/core/profile.py, documented in docs/plugins.md) says
which files to write, how to prepare, start and stop the MTA, how to hand a message over and
which log lines state its verdict. This adapter does that and nothing else:

  start   a private work folder, the lab CA copied into it, a free port, the files written from
          their templates, `prepare.run`, then `start.run` (kept as the foreground process, or
          a daemon that forks) until `start.ready_port` accepts or `start.ready_log` appears.
          Every scenario starts the MTA cold: a new folder, a new process.
  send    the message handed over (SMTP to a local port, or a command), then the log read
          every POLL_S until a delivered / deferred / bounced pattern matches the message's
          key: the MTA's own verdict, so a refused step costs milliseconds, not the deadline.
          `between.run` follows every step (purge the queue: no retry leaks into the next).
  stop    the foreground process group terminated, `stop.run`, the folder removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import time
from collections.abc import Mapping
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO

import aiosmtplib

from ...core import profile as spec
from ...errors import SenderError
from ..base import Message, SendReport, remaining
from ..env import LabEnv
from .base import (
    LogTail,
    SenderTimeout,
    export_ca,
    free_port,
    make_workdir,
    one_line,
    real_root,
    require_isolated,
    run,
    sender_environ,
)

POLL_S = 0.01
HELO = "sender.test"
# The line of a dying MTA's output worth quoting: the last that sounds like an error.
TELLING = re.compile(r"fatal|error|abort|panic|corrupt|double free|segfault|denied|cannot|failed",
                     re.IGNORECASE)


def static_values(profile: spec.Profile) -> dict[str, str]:
    """The facts known without a lab (for `requires`), the others empty, and the variables."""
    values = {name: "" for name in spec.FACTS}
    values.update(real=str(real_root()), profile_dir=profile.folder, helo=HELO,
                  hostname=socket.gethostname())
    return with_vars(profile, values)


def with_vars(profile: spec.Profile, values: dict[str, str]) -> dict[str, str]:
    """`values` plus the profile's variables, each overridable by DOWNGRADE_LAB_<NAME>_<VAR>."""
    out = dict(values)
    prefix = "DOWNGRADE_LAB_" + re.sub(r"[^A-Z0-9]", "_", profile.name.upper()) + "_"
    for name, template in profile.vars:
        out[name] = os.environ.get(prefix + name.upper()) or spec.fill(template, out)
    return out


def available(profile: spec.Profile) -> tuple[bool, str]:
    """(can run here, why not) from the profile's `requires`."""
    values = static_values(profile)
    how = f" ({profile.requires.how})" if profile.requires.how else ""
    for template in profile.requires.programs:
        program = spec.fill(template, values)
        found = os.access(program, os.X_OK) if "/" in program else shutil.which(program)
        if not found:
            return False, f"{program} not found{how}"
    for template in profile.requires.files:
        path = spec.fill(template, values)
        if not os.path.exists(path):
            return False, f"{path} not found{how}"
    for user in profile.requires.users:
        try:
            pwd.getpwnam(spec.fill(user, values))
        except KeyError:
            return False, f"the {user} user is missing{how}"
    return True, ""


class ProfileSender:
    """A daemon MTA driven by a profile. `capabilities` and `name` come from the profile."""

    def __init__(self, profile: spec.Profile) -> None:
        self.profile = profile
        self.name = profile.name
        self.capabilities: frozenset[str] = profile.capabilities
        self._dir: Path | None = None
        self._values: dict[str, str] = {}
        self._environ: dict[str, str] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None
        self._log: LogTail | None = None
        self._count = 0
        self._words: list[str] = []
        self._restart = False  # between.restart: a new MTA process before the next step

    def _where(self, key: str) -> str:
        return f"{Path(self.profile.file).name}: {key}"

    async def start(self, env: LabEnv) -> None:
        require_isolated(env, self.name)
        folder = self._dir = make_workdir(self.name[:8])
        try:
            await self._start(env, folder)
        except BaseException:
            with contextlib.suppress(SenderError):  # the start's error is the one to tell
                await self.stop()
            raise

    async def _start(self, env: LabEnv, folder: Path) -> None:
        p = self.profile
        ca = export_ca(env, folder)
        facts = static_values(p) | {
            "workdir": str(folder), "ca_file": str(ca), "dns": env.dns_host,
            "dns_port": str(env.dns_port), "domain": env.domain, "port": str(free_port()),
            "hosts": ",".join(f"{h}={ip}:{env.ports.get(h, 25)}"
                              for h, ip in sorted(env.host_addresses.items()))}
        self._values = values = with_vars(p, facts)
        self._environ = sender_environ(env, ca, {"LAB_WORKDIR": str(folder)})
        for f in p.files:
            target = folder / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(spec.fill(f.text, values))
            target.chmod(f.mode)
        log_file = Path(spec.fill(p.outcome.log, values))
        self._log = LogTail(log_file if log_file.is_absolute() else folder / log_file)
        self._log.skip()
        for i, cmd in enumerate(p.prepare.run):
            await self._run(cmd, f"prepare.run[{i}]", p.prepare.timeout_s)
        if p.start is not None:
            await self._launch(folder)

    async def _run(self, cmd: spec.Command, key: str, timeout_s: float,
                   values: Mapping[str, str] | None = None, stdin: bytes | None = None,
                   check: bool = True) -> str:
        words = [spec.fill(w, values or self._values) for w in cmd]
        done = await run(words, env=self._environ, timeout_s=timeout_s, check=check,
                         what=self._where(key), stdin=stdin)
        return done.out

    async def _launch(self, folder: Path) -> None:
        start = self.profile.start
        assert start is not None
        if self._log is not None:
            self._log.skip()  # a ready_log line must come from this process
        words = self._words = [spec.fill(w, self._values) for w in start.run]
        sink: int | IO[bytes] = asyncio.subprocess.DEVNULL
        if self._output is not None:
            self._output.close()
        if start.output:
            self._output = sink = (folder / start.output).open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *words, env=self._environ, stdin=asyncio.subprocess.DEVNULL, stdout=sink,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise SenderError(f"{self._where('start.run')}: cannot run {words[0]}: "
                              f"{exc.strerror}") from None
        await self._ready()

    async def _ready(self) -> None:
        start, proc, log = self.profile.start, self._proc, self._log
        assert start is not None and proc is not None and log is not None
        end = time.monotonic() + start.timeout_s
        pattern = (re.compile(spec.fill(start.ready_log, self._values, regex=True))
                   if start.ready_log else None)
        port = int(spec.fill(start.ready_port, self._values)) if start.ready_port else None
        seen_log = pattern is None
        while True:
            if not seen_log and pattern is not None:
                seen_log = any(pattern.search(line) for line in log.read())
            if seen_log and (port is None or await _accepts("127.0.0.1", port)):
                return
            if proc.returncode is not None and not (start.daemon and proc.returncode == 0):
                raise SenderError(f"{self._where('start.run')}: {start.run[0]} exited with "
                                  f"status {proc.returncode} at start{self._last_words()}")
            if time.monotonic() >= end:
                what = (f"port {port}" if port is not None and seen_log
                        else f"{start.ready_log!r} in the log")
                raise SenderError(f"{self._where('start')}: not ready within {start.timeout_s:g} s "
                                  f"(waited for {what}){self._last_words()}")
            await asyncio.sleep(POLL_S)

    def _last_words(self) -> str:
        """The start output's last line, for an error."""
        start = self.profile.start
        if self._dir is None or start is None or not start.output:  # no output file to read
            return ""
        try:
            text = (self._dir / start.output).read_bytes()[-4000:]
        except OSError:
            return ""
        lines = text.decode("utf-8", "replace").splitlines()
        telling = [line for line in lines if TELLING.search(line)]
        line = one_line((telling or lines or [""])[-1])
        return f": {line}" if line else ""

    async def send(self, message: Message, deadline: float) -> SendReport:
        if self._dir is None or self._log is None:
            raise SenderError(f"{self.name}: send() before start()")
        self._count += 1
        path = self._dir / f"message-{self._count}.eml"
        path.write_bytes(message.data)
        values = self._values | {"sender": message.mail_from, "recipient": message.rcpt_to,
                                 "message_file": str(path), "message_id": _message_id(message)}
        if self._restart and self.profile.start is not None:
            self._restart = False
            await self._terminate()
            await self._launch(self._dir)
        self._log.skip()
        dead = self._exited()
        if dead:  # it will deliver nothing more: deferred (held), so the lab does not wait
            return SendReport("deferred", f"{dead} before this step{self._last_words()}")
        try:
            reply = await self._submit(message, values, deadline)
        except SenderTimeout as exc:
            await self._between()
            return SendReport("unknown", f"{exc} (stopped at the step's deadline)")
        except SenderError as exc:
            # a one-shot MTA may exit non-zero after logging its verdict: the log decides
            told = await self._verdict(values | {"queue_id": ""}, time.monotonic())
            await self._between()
            if told.state != "unknown":
                return told
            return SendReport("deferred", f"submission refused: {exc}")
        handed = time.monotonic()
        sub = self.profile.submit
        m = re.search(spec.fill(sub.queue_id, values, regex=True), reply) if sub.queue_id else None
        values["queue_id"] = m.group("id") if m else ""
        try:
            report = await self._verdict(values, deadline)
            # how long the MTA took to log its verdict after it took the message
            report.extra["verdict_s"] = round(time.monotonic() - handed, 3)
        finally:
            await self._between()
        return report

    async def _submit(self, message: Message, values: dict[str, str], deadline: float) -> str:
        """Hand the message over; returns the MTA's words (last SMTP reply / command output)."""
        sub = self.profile.submit
        timeout = min(sub.timeout_s, max(1.0, remaining(deadline)))
        if sub.via == "command":
            return await self._run(sub.command, "submit.command", timeout, values,
                                   stdin=message.data if sub.stdin else None)
        port = int(spec.fill(sub.port, values))
        smtp = aiosmtplib.SMTP(hostname=spec.fill(sub.host, values), port=port, timeout=timeout,
                               start_tls=False, validate_certs=False, local_hostname=HELO)
        try:
            await smtp.connect()
            if sub.starttls:
                await smtp.starttls()
            if sub.user:
                await smtp.login(spec.fill(sub.user, values), spec.fill(sub.password, values))
            _, reply = await smtp.sendmail(message.mail_from, [message.rcpt_to], message.data)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SenderError(f"{self._where('submit')}: {one_line(str(exc))}") from None
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
            smtp.close()
        return reply

    async def _verdict(self, values: dict[str, str], deadline: float) -> SendReport:
        out, log = self.profile.outcome, self._log
        assert log is not None
        lines: list[str] = []
        key: str | None = None
        while True:
            lines += log.read()
            if key is None:
                key = (spec.find_key(out, lines, values) if out.key
                       else values["queue_id"] or values["message_id"])
            if key is not None:
                values["id"] = key
                result = spec.first_result(out, lines, values)
                if result is not None:
                    return await self._report(result, lines, key, values)
            dead = self._exited()
            if dead:  # the MTA's own failure (a crash is not the lab's): the message stays
                # in its queue and nothing will deliver it, so the wait ends here
                return SendReport("deferred", f"{dead}, the message still queued"
                                  f"{self._last_words()}", {"key": key, "log": _mentioning(lines, key)})
            if time.monotonic() >= deadline:
                why = "no verdict in the log" if key is not None else "the message's key is not in the log"
                return SendReport("unknown", f"{self.name}: {why} by the deadline",
                                  {"key": key, "log": _mentioning(lines, key)})
            await asyncio.sleep(POLL_S)

    async def _report(self, result: spec.Result, lines: list[str], key: str,
                      values: Mapping[str, str]) -> SendReport:
        extra: dict[str, object] = {"key": key, "log": _mentioning(lines, key)}
        facts = spec.context_facts(self.profile.outcome, lines, {**values, **dict(result.groups)})
        if facts:
            extra["context"] = facts
        if result.state == "deferred" and self.profile.outcome.queue:
            extra["queue"] = (await self._run(self.profile.outcome.queue, "outcome.queue",
                                              5.0, check=False))[-2000:]
        reason = "; ".join([result.reason, *facts])
        return SendReport(result.state, reason, extra)  # type: ignore[arg-type]

    def _exited(self) -> str:
        """Why the foreground MTA is gone ("" while it runs, or for a daemon that forked)."""
        proc = self._proc
        start = self.profile.start
        if proc is None or start is None or start.daemon or proc.returncode is None:
            return ""
        how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        return f"{self.name}: {Path(self._words[0]).name} {how}"

    async def _between(self) -> None:
        if self._exited():
            return  # nothing left to purge
        between = self.profile.between
        for i, cmd in enumerate(between.run):
            await self._run(cmd, f"between.run[{i}]", between.timeout_s)
        # the same folder (files, queue, log), a new process before the next step (if any):
        # no timer of the last step holds the next message
        self._restart = between.restart

    async def stop(self) -> None:
        """Stop the MTA (its whole process group), run `stop.run`, remove the folder. Idempotent."""
        folder, self._dir = self._dir, None
        if folder is None:
            return
        try:
            await self._terminate()
            for i, cmd in enumerate(self.profile.stop.run):
                await self._run(cmd, f"stop.run[{i}]", self.profile.stop.timeout_s)
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None
            shutil.rmtree(folder, ignore_errors=True)

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        end = time.monotonic() + self.profile.stop.timeout_s
        sig = signal.SIGTERM
        while _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            if time.monotonic() >= end:
                sig = signal.SIGKILL  # a daemon that ignores SIGTERM
            await asyncio.sleep(POLL_S)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a group of zombies (our own child, not yet reaped) counts as gone
    return any(_alive_in_group(pid, pgid) for pid in _pids())


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _alive_in_group(pid: int, pgid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return int(fields[2]) == pgid and fields[0] != "Z"


def _mentioning(lines: list[str], key: str | None) -> list[str]:
    return [line for line in lines if key and key in line][-40:]


def _message_id(message: Message) -> str:
    value = (BytesHeaderParser().parsebytes(message.data).get("Message-ID") or "").strip()
    return value.strip("<>")


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
