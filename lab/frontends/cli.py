"""The `downgrade-lab` command (DESIGN §7). `main(argv)` is a library call: it returns the exit
status instead of exiting, and reads streams and colour from an `Environment`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..core.model import Scenario
from ..errors import LabError, ScenarioError
from . import outputs

if TYPE_CHECKING:
    from ..harness.runner import RunRecord
    from ..harness.topology import Topology


class ExitStatus(IntEnum):
    OK = 0  # every expectation met
    FAILED = 1  # some expectation failed (or the lab erred)
    USAGE = 2  # bad usage or bad scenario
    INTERRUPTED = 130  # Ctrl-C (also when it ended the inner run of --isolate)


def _devnull(mode: str) -> IO[str]:
    return open(os.devnull, mode)  # noqa: SIM115 - lives as long as the process


@dataclass
class Environment:
    # A stream the shell closed (`>&-`) is None in sys: write to /dev/null, read end of input.
    stdout: IO[str] = field(default_factory=lambda: sys.stdout or _devnull("w"))
    stderr: IO[str] = field(default_factory=lambda: sys.stderr or _devnull("w"))
    stdin: IO[str] = field(default_factory=lambda: sys.stdin or _devnull("r"))  # demo --pause

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def stderr_is_terminal(self) -> bool:
        """Progress goes to stderr (stdout stays the matrix): a bar only if that is a terminal."""
        return bool(getattr(self.stderr, "isatty", lambda: False)())

    @property
    def colour(self) -> bool:
        return self.is_terminal and not os.environ.get("NO_COLOR")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` stays a library call."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


class UsageError(LabError):
    pass


DEFAULT_SCENARIOS = "scenarios"
DEFAULT_JOBS = 4


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="downgrade-lab", description="Simulate STARTTLS downgrade attacks and "
                "judge whether SMTP senders honour MTA-STS (RFC 8461).")
    p.add_argument("--traceback", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run scenarios against senders and print the matrix")
    run.add_argument("paths", nargs="*", metavar="PATH", help="scenario files or folders "
                     f"(default: {DEFAULT_SCENARIOS}/)")
    run.add_argument("--sender", action="append", dest="senders", metavar="NAME",
                     help="sender to test (repeat; default: every built-in sender)")
    run.add_argument("--isolate", action="store_true", help="run in a private network namespace")
    run.add_argument("--json", type=_path, metavar="FILE", help="write the run record as JSON")
    run.add_argument("--junit", type=_path, metavar="FILE", help="write JUnit XML")
    run.add_argument("--html", type=_path, metavar="FILE", help="write an HTML report")
    run.add_argument("--pcap", type=_path, metavar="DIR", help="write what crossed the attacker "
                     "as DIR/<scenario>/<sender>-step<N>.pcap")
    run.add_argument("-k", dest="keyword", metavar="EXPR", help="only scenarios matching EXPR "
                     "(words match id, title, tags, conformance ids; and/or/not)")
    run.add_argument("-j", dest="jobs", type=int, default=None, metavar="N",
                     help=f"pairs run at once (default: {DEFAULT_JOBS})")

    ls = sub.add_parser("list", help="list scenarios with titles and conformance ids")
    ls.add_argument("paths", nargs="*", metavar="PATH")

    sub.add_parser("senders", help="sender adapters, and whether each can run here")

    demo = sub.add_parser("demo", help="the classroom walkthrough: five acts on real lab runs")
    demo.add_argument("name", nargs="?", metavar="NAME", help="show one act only: 1 honest, "
                      "2 strip, 3 enforce, 4 testing (default: all four)")
    demo.add_argument("--sender", default="reference", metavar="NAME",
                      help="the sender of acts 3 and 4 (default: %(default)s)")
    demo.add_argument("--pause", action="store_true",
                      help="wait for Enter between acts (end of input continues)")
    demo.add_argument("--html", type=_path, metavar="FILE", help="also write the story as a page")

    up = sub.add_parser("up", help="a live lab for hands-on work: runs COMMAND (or a shell) "
                        "with the lab's environment until it ends")
    up.add_argument("--scenario", type=_path, metavar="FILE",
                    help="the world and attacks of this scenario (default: an enforce policy, "
                    "one MX, no attack)")
    up.add_argument("--step", type=int, default=1, metavar="N",
                    help="which step of the scenario to set up (default: 1)")
    up.add_argument("--isolate", action="store_true", help="run in a private network namespace "
                    "(real ports 53/443/25 and /etc/resolv.conf: what unmodified MTAs need)")
    up.add_argument("--json", type=_path, metavar="FILE",
                    help="write what happened (mail stored, connections, fetches) as JSON")
    up.add_argument("--html", type=_path, metavar="FILE",
                    help="write the session's story (sequence diagram, timeline) as a page")
    up.add_argument("program", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                    help="what to run inside (default: $SHELL)")

    cov = sub.add_parser("coverage", help="write the CONFORMANCE id -> scenarios page")
    cov.add_argument("paths", nargs="*", metavar="PATH")
    cov.add_argument("-o", "--output", default="docs/conformance.md", metavar="FILE",
                     help="where to write it ('-' for standard output; default: %(default)s)")
    cov.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 if FILE differs from what would be written")
    return p


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    args_list = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in _before_dashes(args_list)  # before or after the subcommand
    try:
        with _stop_signals_interrupt() as stopped:
            args = build_parser().parse_args(_without_traceback(args_list))
            args.argv = args_list  # --isolate re-executes the same command inside the namespaces
            try:
                return int(_dispatch(args, env))
            except KeyboardInterrupt:
                if stopped:  # SIGTERM/SIGHUP: the same clean stop as Ctrl-C, the shell's status
                    env.stderr.write(f"downgrade-lab: stopped by {stopped[0].name}\n")
                    return 128 + int(stopped[0])
                raise
    except BrokenPipeError:  # `downgrade-lab list | head`: the reader has all it wanted
        _silence_stdout()
        return ExitStatus.FAILED
    except ScenarioError as exc:
        env.stderr.write(f"downgrade-lab: bad scenario: {exc}\n")
        return ExitStatus.USAGE
    except UsageError as exc:
        env.stderr.write(f"{exc}\n")
        return ExitStatus.USAGE
    except LabError as exc:
        env.stderr.write(f"downgrade-lab: {exc}\n")
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        env.stderr.write("downgrade-lab: interrupted\n")
        return 130
    except RecursionError:
        env.stderr.write("downgrade-lab: input nested too deeply\n")
        return ExitStatus.USAGE
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into one line
        if show_tb:
            traceback.print_exc(file=env.stderr)
        else:
            env.stderr.write(f"downgrade-lab: internal error: {exc!r} (run with --traceback)\n")
        return ExitStatus.FAILED


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[list[signal.Signals]]:
    """While the command runs, SIGTERM and SIGHUP (a CI cancel, a closed terminal) stop it as
    Ctrl-C does, so labs stop, senders stop and the private keys are removed; the list names
    the signal that arrived. Only in the main thread (`main` is also a library call)."""
    stopped: list[signal.Signals] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def handler(signum: int, frame: object) -> None:
        if not stopped:
            stopped.append(signal.Signals(signum))
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            # SIGINT ignored (`cmd &` in a script): nobody would act on it; interrupt here
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)  # asyncio's own Ctrl-C handling, where it runs

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stopped
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _before_dashes(args: list[str]) -> list[str]:
    return args[:args.index("--")] if "--" in args else args


def _without_traceback(args: list[str]) -> list[str]:
    """`--traceback` is accepted anywhere before `--` (errors suggest adding it at the end)."""
    head = _before_dashes(args)
    return [a for a in head if a != "--traceback"] + args[len(head):]


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush does not
    raise a second time (Python's documented recipe)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _dispatch(args: argparse.Namespace, env: Environment) -> int:
    if args.command == "run":
        return _cmd_run(args, env)
    if args.command == "list":
        return _cmd_list(args, env)
    if args.command == "senders":
        return _cmd_senders(env)
    if args.command == "demo":
        from .demo_view import command

        return ExitStatus(command(args, env))
    if args.command == "coverage":
        return _cmd_coverage(args, env)
    if args.command == "up":
        return _cmd_up(args, env)
    raise UsageError(f"unknown command {args.command!r}")


def _scenarios(paths: Sequence[str], keyword: str | None = None) -> list[Scenario]:
    from ..core.scenario import discover
    from ..core.selection import select

    scenarios = discover(paths or [DEFAULT_SCENARIOS])
    if keyword:
        try:
            scenarios = select(scenarios, keyword)
        except ValueError as exc:
            raise UsageError(f"downgrade-lab: -k {keyword!r}: {exc}") from None
    return scenarios


def _cmd_list(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from .report.terminal import render_list

    rows = [(s.id, ",".join(s.rfc), s.title) for s in _scenarios(args.paths)]
    render_list(rows, env.stdout)
    return ExitStatus.OK


def _cmd_coverage(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..core.conformance import render_markdown

    page = render_markdown(_scenarios(args.paths))
    if args.output == "-":
        env.stdout.write(page)
        return ExitStatus.OK
    out = Path(args.output)
    if args.check:
        try:
            current = out.read_text(errors="replace") if out.exists() else ""
        except OSError as exc:
            raise UsageError(f"downgrade-lab: cannot read {out}: {exc.strerror or exc}") from None
        if current != page:
            env.stderr.write(f"downgrade-lab: {out} is stale: run `downgrade-lab coverage`\n")
            return ExitStatus.FAILED
        return ExitStatus.OK
    outputs.prepare(out)
    outputs.write_all([(out, lambda f: f.write_text(page))])
    env.stdout.write(f"wrote {out}\n")
    return ExitStatus.OK


def _cmd_senders(env: Environment) -> ExitStatus:
    from ..senders.registry import SENDERS

    width = max(len(n) for n in SENDERS)
    for name, info in SENDERS.items():
        ok, why = info.available()
        env.stdout.write(f"{name.ljust(width)}  {'ready' if ok else 'unavailable':11}  "
                         f"{info.summary}\n")
        if not ok:
            env.stdout.write(f"{'':{width}}  {'':11}  why: {why}\n")
    return ExitStatus.OK


def _cmd_run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..senders.registry import SENDERS, builtin_senders
    from .report.junit import to_junit
    from .report.terminal import render

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("downgrade-lab: -j takes a number of pairs from 1 up")
    senders = list(dict.fromkeys(args.senders or builtin_senders()))  # each sender once
    for name in senders:
        if name not in SENDERS:
            raise UsageError(f"downgrade-lab: unknown sender {name!r} (known: {', '.join(SENDERS)})")
        ok, why = SENDERS[name].available()
        if not ok:
            raise UsageError(f"downgrade-lab: sender {name!r} cannot run here: {why}")
        if not SENDERS[name].builtin and not args.isolate:
            raise UsageError(f"downgrade-lab: sender {name!r} runs only with --isolate (a "
                             "private network namespace with real ports and resolver)")
    scenarios = _scenarios(args.paths, args.keyword)
    if not scenarios:
        raise UsageError("downgrade-lab: no scenario matches")
    outputs.prepare(args.json, args.junit, args.html, folder=args.pcap,
                    inputs=[Path(s.path) for s in scenarios])
    topology = _isolation(args)
    if topology is None:  # the outer process: the run happened inside the namespaces
        from ..harness.isolate import run as run_isolated

        code = run_isolated(args.argv)
        return ExitStatus(code) if code in {int(s) for s in ExitStatus} else ExitStatus.FAILED
    record = asyncio.run(_run_with_progress(scenarios, senders, args.jobs or DEFAULT_JOBS, env,
                                            capture=args.pcap is not None,
                                            topology=topology)).as_json()
    render(record, env.stdout, colour=env.colour)  # first: a failing report file loses nothing
    env.stdout.flush()
    writers: list[tuple[Path | None, Callable[[Path], object]]] = [
        (args.json, lambda f: f.write_text(json.dumps(record, indent=1) + "\n")),
        (args.junit, lambda f: f.write_bytes(to_junit(record))),
        (args.html, lambda f: _write_html(f, record)),
        (args.pcap, lambda d: _write_pcaps(d, record, env)),
    ]
    outputs.write_all(writers)
    return ExitStatus(1 if record["summary"]["FAIL"] or record["summary"]["ERROR"] else 0)


def _write_html(path: Path, record: dict[str, Any]) -> None:
    from .report.html import to_html

    path.write_text(to_html(record), encoding="utf-8", errors="replace")


def _write_pcaps(folder: Path, record: dict[str, Any], env: Environment) -> None:
    from .report.pcap import write_pcaps

    written = write_pcaps(record, folder)
    env.stderr.write(f"wrote {len(written)} pcap files under {folder}\n")


def _cmd_up(args: argparse.Namespace, env: Environment) -> int:
    from . import up

    command = list(args.program)
    if command[:1] == ["--"]:
        command = command[1:]
    scenario, step = up.choose(args.scenario, args.step)  # fails here, outside namespaces
    outputs.prepare(args.json, args.html)
    topology = _isolation(args)
    if topology is None:
        from ..harness.isolate import run as run_isolated

        return run_isolated(args.argv, foreground=True)
    return up.run(scenario, step, topology, command, stdout=env.stdout, json_file=args.json,
                  html_file=args.html)


async def _run_with_progress(scenarios: list[Scenario], senders: list[str], jobs: int,
                             env: Environment, *, capture: bool = False,
                             topology: Topology) -> RunRecord:
    from ..harness.runner import run_all
    from .progress import progress

    with progress(env, len(scenarios) * len(senders)) as tick:
        return await run_all(scenarios, senders, jobs=jobs, progress=tick, capture=capture,
                             topology=topology)


def _isolation(args: argparse.Namespace) -> Topology | None:
    """The topology to run in; None when this process must re-execute itself inside new
    namespaces instead (`--isolate`, lab/harness/isolate.py)."""
    from ..harness import isolate
    from ..harness.topology import ISOLATED, LOOPBACK

    if not args.isolate:
        return LOOPBACK
    if not isolate.inside():
        isolate.unshare_command()  # fail here, in one line, if isolation cannot work
        return None
    isolate.enter()
    return ISOLATED
