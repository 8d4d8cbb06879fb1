"""`downgrade-lab up`: a live lab for hands-on work (DESIGN §7, issue 4).

The lab of one scenario step keeps running while COMMAND (or a shell) runs with the lab's
environment: SSL_CERT_FILE / NODE_EXTRA_CA_CERTS set to the lab CA, proxy variables removed,
LAB_* variables with the addresses. With `--isolate` the command runs inside the lab's own
network namespace, where /etc/resolv.conf points at the lab DNS and every MX listens on port
25, so an unmodified MTA, `swaks` or a script just works. When the command ends the lab
stops, prints what happened (what the receiver stored, each connection's dialogue with the
attacker's changes, what the attacker read), judges the step's expectation from that evidence
(`--json`, `--html` keep it) and exits with the command's status.

The command runs in a process group of its own which, on a terminal, becomes the terminal's
foreground (as a shell does for a job): Ctrl-C reaches the command alone, an interactive
shell or program reads the terminal, and when the command ends the lab stops. SIGINT, SIGTERM
or SIGHUP sent to the lab itself are passed to the command's group, then SIGTERM and SIGKILL
follow STOP_GRACE_S apart until it has ended; whatever it left in its group is sent SIGTERM.

The banner, the event lines, the summary and the verdict are pure functions of the lab's
records (`banner`, `stored_line`, `summary`, `judge`, `as_run_record`); `live()` is the thin
async shell around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec
from msgspec import Struct

from ..core.defaults import DEFAULT_SCENARIO
from ..core.model import Scenario, Step
from ..core.record import RunRecord, SenderReport, StepRecord
from ..core.scenario import load_scenario, scenario_from_text
from ..core.scenariofiles import locate
from ..core.verdict import Evidence, Judgement, judge_step, outcome
from ..errors import LabError
from ..harness.isolate import shell_status
from ..harness.lab import Lab, Observation
from ..harness.topology import Topology
from ..senders.real.base import export_ca, make_workdir, sender_environ
from ..services.receiver import StoredMessage
from . import outputs
from .demo import dialogue
from .demo_view import DIALOGUE_HEAD, plain_line

STOP_GRACE_S = 5.0  # after Ctrl-C or SIGTERM, how long COMMAND may take before SIGKILL
POLL_S = 0.2  # how often new mail is looked for (for the live event lines)
DEFAULT_SHELL = "/bin/sh"
def choose(scenario_file: str | Path | None, step_number: int) -> tuple[Scenario, Step]:
    """The scenario (the built-in default without a file; `builtin/FOLDER/NAME.toml` names one
    of the bundled catalogue) and its step `step_number` (1-based), or LabError naming what is
    wrong."""
    if scenario_file is None:
        # with no --scenario: the `lab_scenario` fixture's world, an enforce policy, no attack
        scenario = scenario_from_text(DEFAULT_SCENARIO, file="<built-in>", scenario_id="live")
    else:
        path, root = locate(scenario_file)
        if path.is_dir():
            raise LabError(f"--scenario {scenario_file}: a folder; give one scenario file")
        if not path.is_file():
            raise LabError(f"--scenario {scenario_file}: no such file")
        # a bundled scenario keeps its catalogue id (`strip/no-policy`), as `run builtin` shows it
        sid = Path(os.path.relpath(path, root)).with_suffix("").as_posix() if root else None
        scenario = load_scenario(path, sid)
    if not 1 <= step_number <= len(scenario.steps):
        raise LabError(f"--step {step_number}: {scenario.id} has steps 1 to {len(scenario.steps)}")
    return scenario, scenario.steps[step_number - 1]


class Listener(Struct, frozen=True):
    """One lab host as the banner shows it."""

    role: str  # dns | mx | policy | tlsrpt
    name: str
    ip: str
    port: int


def listeners(lab: Lab) -> list[Listener]:
    env = lab.env
    out = [Listener("dns", "", env.dns_host, env.dns_port)]
    for host in lab.scenario.mx_hosts():
        ip, port = env.address(host, 25)
        out.append(Listener("mx", host, ip, port))
    for role, name in (("policy", f"mta-sts.{lab.domain}"), ("tlsrpt", f"tlsrpt.{lab.domain}")):
        ip, port = env.address(name, 443)
        out.append(Listener(role, name, ip, port))
    return out


def banner(scenario: Scenario, step: Step, topology: Topology, hosts: Sequence[Listener],
           ca_file: Path, environ: Mapping[str, str], command: Sequence[str]) -> str:
    """What an MTA developer needs to point a sender at the lab."""
    world = step.world
    policy = world.policy
    lines = [f"Downgrade Lab is up: {scenario.id}, step {step.index + 1} of {len(scenario.steps)}"
             f" ({topology.summary})",
             f"  {'domain':9} {world.domain}   mail to {world.message.to}",
             f"  {'policy':9} " + (f"mode {policy.mode}, mx {', '.join(policy.mx or world.dns.mx)}"
                                   if policy else "none published"),
             f"  {'attacker':9} " + ("; ".join(a.describe() for a in step.attack)
                                     or "none: an honest path")]
    isolated = topology.isolated
    for h in hosts:
        where = f"{h.ip}:{h.port}"
        if h.role == "dns":
            note = "(/etc/resolv.conf points here)" if isolated else "(UDP and TCP)"
            lines.append(f"  {'DNS':9} {where:21} {note}")
        elif h.role == "mx":
            lines.append(f"  {'MX':9} {where:21} {h.name}  (the attacker's proxy, then the "
                         "genuine receiver)")
        elif h.role == "policy":
            lines.append(f"  {'policy':9} {where:21} https://{h.name}/.well-known/mta-sts.txt")
        else:
            lines.append(f"  {'TLS-RPT':9} {where:21} https://{h.name}/report")
    lines.append(f"  {'CA':9} {ca_file}")
    shown = ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "LAB_DNS", "LAB_DNS_PORT", "LAB_HOSTS")
    lines.append(f"  {'env':9} " + " ".join(f"{k}={environ[k]}" for k in shown if k in environ))
    if not isolated:
        lines.append("  Loopback topology: every host is 127.0.0.1, told apart by port; only a "
                     "sender that takes a port map can use it (--isolate gives real ports).")
    what = " ".join(command) if command else "a shell; `exit` stops the lab"
    lines.append(f"Running {what}.")
    return "\n".join(lines) + "\n"


def stored_line(m: Any) -> str:
    """One line per message the genuine receiver stored, as it arrives."""
    how = f"over {m.tls_version}" if m.tls else "in PLAINTEXT"
    return f"[lab] {m.mx} stored mail from <{m.mail_from}> to {', '.join(m.rcpt_tos)} {how}"


def summary(observed: Observation | Mapping[str, Any], *, dialogues: bool = True) -> str:
    """What happened while the lab was up, from `Lab.observe()` (or its JSON); `dialogues`:
    with each connection's SMTP dialogue as both sides saw it (the attacker's changes marked)."""
    if not isinstance(observed, Observation):
        observed = Observation.from_json(observed)
    stored, traffic = observed.received, observed.traffic
    lines = [f"[lab] stopped. The receiver stored {len(stored)} message(s)"
             + (":" if stored else ".")]
    for m in stored:
        how = f"TLS {m.tls_version}, SNI {m.sni or '-'}" if m.tls else "PLAINTEXT"
        lines.append(f"  {m.mx}: <{m.mail_from}> -> {', '.join(m.rcpt_tos)} ({how})")
    conns = traffic.connections
    lines.append(f"[lab] {len(conns)} connection(s) crossed the attacker"
                 + (":" if conns else "."))
    for i, c in enumerate(conns):
        talk = dialogue(traffic.transcript, i)
        facts = []
        if c.attacks:
            facts.append("attacks " + ", ".join(c.attacks))
        if any(ln.change == "deleted" and "STARTTLS" in ln.receiver.upper() for ln in talk):
            facts.append("STARTTLS deleted from the EHLO reply")
        if c.attacker_read_bytes:
            facts.append(f"attacker read {c.attacker_read_bytes} bytes of the sender's side"
                         + (" incl. MAIL FROM" if c.saw_mail_from else ""))
        else:
            facts.append("attacker read nothing the sender said")
        lines.append(f"  {c.mx}: " + "; ".join(facts))
        if dialogues and talk:
            lines += [DIALOGUE_HEAD, *(plain_line(line) for line in talk)]
    lines.append(f"[lab] {len(traffic.policy_fetches)} policy fetch(es), "
                 f"{len(traffic.dns_queries)} DNS quer(ies), "
                 f"{len(observed.tlsrpt_reports)} TLS report(s)")
    return "\n".join(lines) + "\n"


def judge(step: Step, seen: Evidence) -> Judgement:
    """The step's expectation against the session, as `run` judges a sender by the lab's
    evidence alone (the `command` sender's way): every message the command sent counts."""
    return judge_step(step.expect, step.tolerate, seen, step.because)


def verdict_line(step: Step, judged: Judgement, stored: int) -> str:
    why = f": {judged.reason}" if judged.reason else ""
    note = " (from the lab's evidence: sending nothing counts as refusing)" if not stored else ""
    return f"[lab] step {step.index + 1} expects {step.expect}: {judged.verdict}{why}{note}\n"


async def live(scenario: Scenario, step: Step, topology: Topology, command: Sequence[str],
               *, stdout: IO[str]) -> dict[str, Any]:
    """Run the lab of `step` until `command` (or a shell) ends; return what happened, with the
    command's exit status as "exit"."""
    async with Lab(scenario, topology=topology) as lab:
        await lab.prepare(step)
        folder = make_workdir("up")
        try:
            ca = export_ca(lab.env, folder)  # readable by daemons that drop root
            environ = sender_environ(lab.env, ca, {"LAB_WORKDIR": str(folder)})
            argv = list(command) or [os.environ.get("SHELL") or DEFAULT_SHELL]
            stdout.write(banner(scenario, step, topology, listeners(lab), ca, environ, command))
            stdout.flush()
            code, seen = await _supervise(lab, argv, environ, out=stdout)
            observed = lab.observe(seen)  # judged by core/evidence.py, as `run` judges a step
            stdout.write(summary(observed))
            ev = observed.evidence
            judged = judge(step, ev)
            stdout.write(verdict_line(step, judged, len(observed.received)))
            return {"scenario": scenario.id, "step": step.index + 1, "topology": topology.name,
                    "command": argv, "exit": code, "expect": step.expect,
                    "outcome": outcome(ev), "verdict": judged.verdict,
                    "reason": judged.reason, "attacker_saw_mail_from": ev.attacker_saw_mail_from,
                    "attacker_saw_body": ev.attacker_saw_body, **observed.to_json()}
        finally:
            shutil.rmtree(folder, ignore_errors=True)


async def _supervise(lab: Lab, argv: list[str], environ: dict[str, str], *,
                     out: IO[str]) -> tuple[int, list[StoredMessage]]:
    """Run `argv` to its end, printing each stored message as it arrives; the signals as the
    module docstring says (handled from before the command starts, so none is lost in
    between). Returns the exit status and the messages already taken."""
    tty = _foreground_terminal()
    loop = asyncio.get_running_loop()
    stop_with: list[signal.Signals] = []  # the first signal to pass on, once asked to stop

    def asked(signum: signal.Signals) -> None:
        if not stop_with:
            stop_with.append(signum)

    handled = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM,
               signal.SIGHUP: signal.SIGTERM}
    for signum, first in handled.items():
        loop.add_signal_handler(signum, asked, first)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=environ, preexec_fn=lambda: _own_group(tty))
        except OSError as exc:
            raise LabError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        seen: list[StoredMessage] = []
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while not waiter.done():
                await asyncio.wait([waiter], timeout=POLL_S)
                for m in lab.receiver.take_messages():
                    out.write(stored_line(m) + "\n")
                    out.flush()
                    seen.append(m)
                if stop_with:
                    await _stop(proc.pid, waiter, stop_with[0])
            return shell_status(waiter.result()), seen
        finally:
            if not waiter.done():
                await _stop(proc.pid, waiter, signal.SIGTERM)
            _signal_group(proc.pid, signal.SIGTERM)  # what the command left in its group
            if tty is not None:
                _give_terminal(tty, os.getpgrp())
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _foreground_terminal() -> int | None:
    """The terminal this process runs in the foreground of (its stdin, stdout or stderr), or
    None: the command then needs no terminal hand-over."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:
            continue
    return None


def _own_group(tty: int | None) -> None:
    """In the command's process, before exec: a process group of its own (so the lab can stop
    everything it started), and the terminal's foreground if the lab had it, as a shell does
    for a job: Ctrl-C then reaches the command alone, and an interactive program can read."""
    os.setpgid(0, 0)
    if tty is not None:
        _give_terminal(tty, os.getpgrp())


def _give_terminal(tty: int, pgrp: int) -> None:
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # allowed from the background
    try:
        os.tcsetpgrp(tty, pgrp)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


def _signal_group(pgid: int, signum: signal.Signals) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _stop(pgid: int, waiter: asyncio.Future[int], first: signal.Signals) -> None:
    """`first` (SIGINT when the lab was interrupted), then SIGTERM, then SIGKILL, STOP_GRACE_S
    apart, to the command's process group, until the command has ended."""
    for signum in dict.fromkeys((first, signal.SIGTERM, signal.SIGKILL)):
        if waiter.done():
            return
        _signal_group(pgid, signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), STOP_GRACE_S)


def run(scenario: Scenario, step: Step, topology: Topology, command: Sequence[str], *,
        stdout: IO[str] = sys.stdout, json_file: Path | None = None,
        html_file: Path | None = None) -> int:
    """`live()` to its end, then the --json and --html files; the command's exit status."""
    record = asyncio.run(live(scenario, step, topology, command, stdout=stdout))

    def page(path: Path) -> None:
        from .report.html import to_html

        path.write_text(to_html(as_run_record(scenario, step, record)), encoding="utf-8",
                        errors="replace")

    outputs.write_all([(json_file, lambda f: f.write_text(json.dumps(record, indent=1) + "\n")),
                       (html_file, page)])
    return int(record["exit"])


def as_run_record(scenario: Scenario, step: Step, record: Mapping[str, Any]) -> RunRecord:
    """The session as a one-cell run record (DESIGN §6), for the HTML story: the sender column
    is the command, its one step the lab's step with what was observed."""
    from ..harness.runner import attack_json, pair_record, run_record

    shown = msgspec.structs.replace(
        StepRecord.from_json(record), attack=attack_json(step),
        sender_report=SenderReport("unknown", f"{' '.join(record['command'])}: exit {record['exit']}"))
    result = pair_record(scenario, "up: " + " ".join(record["command"]),
                         Judgement(record["verdict"], record["reason"]), steps=[shown])
    return run_record([result])
