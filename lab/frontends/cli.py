"""The `downgrade-lab` command (DESIGN §7). `main(argv)` is a library call: it returns the exit
status instead of exiting, and reads streams and colour from an `Environment`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import __version__
from ..core.model import Scenario
from ..core.scenariofiles import BUILTIN
from ..errors import LabError, ScenarioError
from . import outputs

# Re-exported: `main(argv, env=Environment(...))` is how tests and scripts call the CLI.
from .console import Environment as Environment
from .console import ExitStatus as ExitStatus
from .console import UsageError as UsageError

if TYPE_CHECKING:
    from ..core.record import PairRecord, RunRecord
    from ..harness.pki import PKI
    from ..harness.topology import Topology


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` stays a library call."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


DEFAULT_SCENARIOS = BUILTIN  # the bundled catalogue
DEFAULT_JOBS = 8


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def _scenario_path(text: str) -> str:
    """A scenario path as typed: `builtin/...` names the bundled catalogue, so it stays text."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return text


def _shard(text: str) -> tuple[int, int]:
    from ..core.selection import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="downgrade-lab", description="Simulate STARTTLS downgrade attacks and "
                "judge whether SMTP senders honour MTA-STS (RFC 8461).")
    p.add_argument("--traceback", action="store_true", help="show tracebacks of internal errors")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    # not required by argparse: `--version` alone is a command line (main checks the rest)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    paths_help = ("scenario files or folders; `builtin` or `builtin/FOLDER` name the bundled "
                  "catalogue (default: builtin)")

    run = sub.add_parser("run", help="run scenarios against senders and print the matrix")
    run.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    run.add_argument("--sender", action="append", dest="senders", metavar="NAME",
                     help="sender to test: a name (`downgrade-lab senders`), module:Class or a "
                     "profile FILE.toml (repeat; default: every built-in sender)")
    run.add_argument("--isolate", action="store_true", help="run in a private network namespace")
    run.add_argument("--json", type=_path, metavar="FILE", help="write the run record as JSON")
    run.add_argument("--junit", type=_path, metavar="FILE", help="write JUnit XML")
    run.add_argument("--html", type=_path, metavar="FILE", help="write an HTML report")
    run.add_argument("--pcap", type=_path, metavar="DIR", help="write what crossed the attacker "
                     "as DIR/<scenario>/<sender>-step<N>.pcap")
    run.add_argument("-k", dest="keyword", metavar="EXPR", help="only scenarios matching EXPR "
                     "(words match id, title, tags, conformance ids; and/or/not)")
    run.add_argument("-j", dest="jobs", type=int, default=None, metavar="N",
                     help=f"pairs run at once (default: {DEFAULT_JOBS}; with --isolate, N "
                     f"namespaces of their own, default {isolated_jobs()} here)")
    run.add_argument("--workers", type=int, default=None, metavar="P",
                     help="loopback runs: P processes sharing the pairs, each with -j N "
                     f"(default: one per core, at most {MAX_WORKERS}, for {WORKERS_FROM} pairs "
                     f"or more; 1 below that; {default_workers(WORKERS_FROM)} here)")
    # --isolate -j N, --workers P: worker I of N runs its share of the pairs, record to FILE
    run.add_argument("--worker-shard", metavar="I/N:FILE", help=argparse.SUPPRESS)
    run.add_argument("--shard", type=_shard, metavar="K/N", help="run only shard K of N (a CI "
                     "matrix): scenarios split by a hash of their id; join with `merge`")

    merge = sub.add_parser("merge", help="join run records (the shards of a CI matrix) and "
                           "print the matrix")
    merge.add_argument("records", nargs="+", type=_path, metavar="RECORD.json")
    merge.add_argument("--json", type=_path, metavar="FILE", help="write the joined run record")
    merge.add_argument("--junit", type=_path, metavar="FILE", help="write JUnit XML")
    merge.add_argument("--html", type=_path, metavar="FILE", help="write an HTML report")

    ls = sub.add_parser("list", help="list scenarios with titles and conformance ids")
    ls.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)

    sub.add_parser("senders", help="sender adapters, and whether each can run here")
    sub.add_parser("setup-senders", help="install the real MTAs the adapters drive into the "
                   "per-user data folder (root for the Debian packages)")

    cat = sub.add_parser("scenarios", help="the bundled catalogue")
    cat_sub = cat.add_subparsers(dest="action", required=True, parser_class=_Parser)
    export = cat_sub.add_parser("export", help="copy the bundled catalogue to DIR for editing")
    export.add_argument("folder", type=_path, metavar="DIR",
                        help="a new or empty folder; `downgrade-lab run DIR` then runs the copy")

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
    up.add_argument("--scenario", type=_scenario_path, metavar="FILE",
                    help="the world and attacks of this scenario (`builtin/FOLDER/NAME.toml`: "
                    "a bundled one; default: an enforce policy, one MX, no attack)")
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

    cov = sub.add_parser("coverage", help="the CONFORMANCE id -> scenarios page (Markdown)")
    cov.add_argument("paths", nargs="*", metavar="PATH", help=paths_help)
    cov.add_argument("-o", "--output", default="-", metavar="FILE",
                     help="write it to FILE (default: standard output)")
    cov.add_argument("--check", action="store_true",
                     help="with -o FILE: write nothing; exit 1 if FILE differs from the page")
    return p


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    args_list = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in _before_dashes(args_list)  # before or after the subcommand
    try:
        with _stop_signals_interrupt() as stopped:
            args = build_parser().parse_args(_without_traceback(args_list))
            if args.version:
                env.stdout.write(f"downgrade-lab {__version__}\n")
                return ExitStatus.OK
            if args.command is None:
                raise UsageError("downgrade-lab: the following arguments are required: command "
                                 "(downgrade-lab --help lists them)")
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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            # A lab run: interrupt it from the loop, between callbacks. Raised here, at any
            # bytecode, the KeyboardInterrupt was sometimes lost: inside a TLS SNI callback
            # (which the ssl module reports as unraisable) or a finalizer; and the one cancel
            # of asyncio's own Ctrl-C handling can be swallowed (Python 3.11's wait_for).
            loop.call_soon_threadsafe(_interrupt)
            return
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


def _interrupt() -> None:
    """A loop callback: KeyboardInterrupt leaves the loop from here (asyncio re-raises it from
    a callback), and `asyncio.run` then cancels every task and lets each clean up."""
    raise KeyboardInterrupt


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
    command = _COMMANDS.get(args.command)
    if command is None:
        raise UsageError(f"unknown command {args.command!r}")
    if _OWN_PROCESS and args.command in _LAB_COMMANDS:
        if args.command == "run" and not args.isolate and args.worker_shard is None:
            _start_pki()  # not for --isolate (its labs run elsewhere) nor a worker's share
        _import_aiohttp_lab_trust_only()
        if args.command != "run":  # `run` does, once it has imported what its labs need
            _collector_on()
    elif _OWN_PROCESS:
        gc.enable()  # off since launch.py; with Python's thresholds
    try:
        return command(args, env)
    finally:
        _early_pki(None)  # not taken (a usage error, a run of workers): stop its maker


# The lab PKI of a `run`, started by `_dispatch` before the rest of the lab is imported: its
# certificate maker (a process of its own, lab/harness/pki.py) makes the CA and the
# certificates on the second core meanwhile. Taken by the run that stays in this process.
_EARLY_PKI: list[PKI] = []


def _start_pki() -> None:
    from ..harness.pki import PKI

    _EARLY_PKI.append(PKI(background=True))


def _early_pki(scenarios: list[Scenario] | None) -> PKI | None:
    """The PKI `_dispatch` started, asked for the certificates `scenarios` will present, for
    the caller to use and close; with None, or when it must not be used in this process (a
    run in several processes forks its workers), closed here."""
    if not _EARLY_PKI:
        return None
    pki = _EARLY_PKI.pop()
    if scenarios is None:
        pki.close()
        return None
    pki.prepare(cert for s in scenarios for cert in s.certificates())
    return pki


# Set by `entry()`: the process is the command's own, not a test's or a plugin's host.
_OWN_PROCESS = False
_LAB_COMMANDS = frozenset({"run", "up", "demo"})  # the ones that start labs
# The cyclic collector's thresholds in a process of those commands (Python's: 700, 10, 10). A
# lab makes and drops many objects per pair (transcripts, DNS messages, TLS objects) and few
# cycles; with the defaults the built-in matrix spent 3.4 % of its CPU in collections (447
# young ones, 4 full ones per process), with these 1.5 % (docs/performance.md). Only in the
# command's own process: a host that imports the lab keeps its own.
LAB_GC_THRESHOLD = (20_000, 20, 50)


def _collector_on() -> None:
    """The cyclic collector on again (launch.py turned it off for the imports), at the lab
    thresholds, with everything made so far kept out of its collections (`gc.freeze`: the
    modules, which live as long as the process)."""
    gc.freeze()
    gc.set_threshold(*LAB_GC_THRESHOLD)
    gc.enable()


def _import_aiohttp_lab_trust_only() -> None:
    """Import aiohttp with an empty system trust store. When imported, aiohttp builds two
    default client contexts from the system store (about 200 ms on the standard machine, most
    of a one-scenario run's start); every TLS client of the lab brings its own context that
    trusts the lab CA alone, so the defaults are never used, and a default context that trusts
    nothing is the right one for a process that must only reach the lab. Only in the command's
    own process: a pytest run or a script that imports the lab keeps its own trust store."""
    if "aiohttp" in sys.modules:
        return
    saved = {name: os.environ.get(name) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    os.environ["SSL_CERT_FILE"] = os.environ["SSL_CERT_DIR"] = os.devnull
    # Nor aiodns (pycares), for the process's life, where it is installed (postfix-mta-sts-
    # resolver brings it): aiohttp would make it its default resolver and dkimpy its async
    # verifier, neither of which the lab uses (its clients resolve through the lab DNS, the
    # collector verifies synchronously); importing it costs about 20 ms. lab/core/dkim.py reads
    # this mark as "the command's own process" and imports dkimpy without dnspython's resolver.
    sys.modules.setdefault("aiodns", None)  # type: ignore[arg-type]
    try:
        import aiohttp  # noqa: F401
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def entry() -> int:
    """The `downgrade-lab` command and `python -m downgrade_lab` (through launch.py)."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    try:
        return main()
    finally:
        # Everything still alive is the interpreter's to tear down, and its collections at exit
        # would walk every object of every module loaded: kept out of them, a one-scenario run
        # exits about 60 ms sooner (docs/performance.md). Nothing is lost: what the command
        # writes is closed by then, and objects are still freed when their modules go.
        gc.freeze()


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


def _cmd_export(args: argparse.Namespace, env: Environment) -> ExitStatus:
    import shutil

    from ..core.scenariofiles import builtin_root, scenario_files

    folder: Path = args.folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"downgrade-lab: scenarios export {folder}: exists and is not an empty "
                         "folder")
    root = builtin_root()
    files = scenario_files(root)
    try:
        for f in files:
            target = folder / f.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    except OSError as exc:
        raise UsageError(f"downgrade-lab: scenarios export {folder}: "
                         f"{exc.strerror or exc}") from None
    env.stdout.write(f"copied {len(files)} scenarios to {folder} "
                     f"(`downgrade-lab run {folder}` runs them, with the same ids)\n")
    return ExitStatus.OK


def _cmd_list(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from .report.terminal import render_list

    rows = [(s.id, ",".join(s.rfc), s.title) for s in _scenarios(args.paths)]
    render_list(rows, env.stdout)
    return ExitStatus.OK


def _cmd_coverage(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..core.conformance import render_markdown

    page = render_markdown(_scenarios(args.paths))
    if args.output == "-":
        if args.check:
            raise UsageError("downgrade-lab: coverage --check compares with a file: give -o FILE")
        env.stdout.write(page)
        return ExitStatus.OK
    out = Path(args.output)
    if args.check:
        try:
            current = out.read_text(errors="replace") if out.exists() else ""
        except OSError as exc:
            raise UsageError(f"downgrade-lab: cannot read {out}: {exc.strerror or exc}") from None
        if current != page:
            env.stderr.write(f"downgrade-lab: {out} is stale: run `downgrade-lab coverage -o {out}`\n")
            return ExitStatus.FAILED
        return ExitStatus.OK
    outputs.prepare(out)
    outputs.write_all([(out, lambda f: f.write_text(page))])
    env.stdout.write(f"wrote {out}\n")
    return ExitStatus.OK


def _cmd_senders(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..senders.registry import all_senders, describe

    infos = [describe(info) for info in all_senders().values()]
    width = max(len(i.name) for i in infos)
    for info in infos:
        ok, why = info.available()
        origin = f" [{info.origin}]" if info.origin != "lab" else ""
        env.stdout.write(f"{info.name.ljust(width)}  {'ready' if ok else 'unavailable':11}  "
                         f"{info.summary}{origin}\n")
        if not ok:
            env.stdout.write(f"{'':{width}}  {'':11}  why: {why}\n")
    return ExitStatus.OK


def _cmd_run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..core.senderchoice import Refusal
    from ..senders.registry import choose

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("downgrade-lab: -j takes a number of pairs from 1 up")
    choice = choose(args.senders or (), isolate=args.isolate)
    if isinstance(choice, Refusal):
        raise UsageError(f"downgrade-lab: {choice.message}")
    senders = list(choice.run)
    scenarios = _scenarios(args.paths, args.keyword)
    if not scenarios:
        raise UsageError("downgrade-lab: no scenario matches")
    if args.shard is not None:
        from ..core.selection import shard

        index, count = args.shard
        scenarios = shard(scenarios, index, count)
        if not scenarios:  # more shards than scenarios: an empty shard is no error in a matrix
            env.stderr.write(f"downgrade-lab: shard {index}/{count} holds no scenario\n")
    outputs.prepare(args.json, args.junit, args.html, folder=args.pcap,
                    inputs=[Path(s.path) for s in scenarios])
    topology = _isolation(args)
    jobs = args.jobs or (isolated_jobs() if args.isolate else DEFAULT_JOBS)
    if args.workers is not None and args.workers < 1:
        raise UsageError("downgrade-lab: --workers takes a number of processes from 1 up")
    workers = args.workers or default_workers(len(scenarios) * len(senders))
    pairs = len(scenarios) * len(senders)
    where = _run_where(args, topology, jobs, workers, pairs)
    # The early PKI serves a run whose labs are all here; the others close it. Taken before the
    # imports below, so that its maker makes the certificates meanwhile.
    pki = _early_pki(scenarios if where == "here" else None)
    try:
        if topology is not None:  # the labs run here or in forks of this process
            from ..harness import runner  # noqa: F401 - once, before any fork: forks share it
        if _OWN_PROCESS:
            _collector_on()
        if where == "isolated-workers":
            record = _run_workers(args, scenarios, senders, jobs, env, isolated=True)
        elif where == "workers":
            record = _run_workers(args, scenarios, senders, workers, env, isolated=False)
        elif where == "isolated":  # the outer process: the run happens inside the namespaces
            from ..harness.isolate import run as run_isolated

            code = run_isolated(args.argv)
            return ExitStatus(code) if code in {int(s) for s in ExitStatus} else ExitStatus.FAILED
        elif where == "share":  # one of the workers of the two `workers` kinds
            assert topology is not None and args.worker_shard is not None
            _, n, out = _worker_shard(args.worker_shard)
            return _work_share(scenarios, senders, jobs, env, topology, n, out,
                               capture=args.pcap is not None)
        else:
            assert topology is not None
            record = asyncio.run(_run_with_progress(scenarios, senders, jobs, env,
                                                    capture=args.pcap is not None,
                                                    topology=topology, pki=pki))
    finally:
        if pki is not None:
            pki.close()
    return _report(record, args, env)


RunWhere = Literal["isolated-workers", "isolated", "share", "workers", "here"]


def _run_where(args: argparse.Namespace, topology: Topology | None, jobs: int, workers: int,
               pairs: int) -> RunWhere:
    """Where `_cmd_run` runs the labs: without a topology (`--isolate`, the outer process), in
    `jobs` namespaced workers or one inner run; as `--worker-shard`, the share of one worker;
    a loopback run of more than one pair and `workers`, in forked workers; else all here, one
    event loop for every pair."""
    if topology is None:
        return "isolated-workers" if min(jobs, pairs) > 1 else "isolated"
    if args.worker_shard is not None:
        return "share"
    if not topology.isolated and min(workers, pairs) > 1:
        return "workers"
    return "here"


def _run_workers(args: argparse.Namespace, scenarios: list[Scenario], senders: list[str],
                 n: int, env: Environment, *, isolated: bool) -> RunRecord:
    """The pairs over `n` worker processes, with one progress for all of them. Loopback
    workers of the command's own process are forks of it, each running `_work_share` on the
    scenarios already read (`workers.can_fork`); others are the command again."""
    from ..harness.topology import LOOPBACK
    from ..harness.workers import can_fork, run_workers
    from .progress import progress

    def work(index: int, count: int, out: Path) -> int:
        return _work_share(scenarios, senders, args.jobs or DEFAULT_JOBS, Environment(),
                           LOOPBACK, count, out, capture=args.pcap is not None)

    return run_workers(args.argv, scenarios, senders, n, env.stderr, isolated=isolated,
                       progress=lambda: progress(env, len(scenarios) * len(senders)),
                       work=work if _OWN_PROCESS and can_fork() else None)


def _work_share(scenarios: list[Scenario], senders: list[str], jobs: int, env: Environment,
                topology: Topology, n: int, out: Path, *, capture: bool) -> ExitStatus:
    """One of a run's `n` workers: its pairs, claimed as its slots get free, and its record
    in `out` for the outer process (`workers.ShareWriter`)."""
    from ..core.selection import claim_plan
    from ..harness.workers import Claims, ShareWriter

    slots = n * (1 if topology.isolated else jobs)  # the slots of every worker of the run
    claims = Claims(out.parent, claim_plan(scenarios, senders, slots))
    # Each pair goes to the share as it finishes, its texts made then, while the worker's other
    # pairs run (or wait on a silent peer): the outer reads it meanwhile.
    share = ShareWriter(out)
    done = asyncio.run(_run_with_progress(scenarios, senders, jobs, env, capture=capture,
                                          topology=topology, claim=claims, then=share.add))
    share.close()
    return ExitStatus(done.exit_code())


def _report(record: RunRecord, args: argparse.Namespace, env: Environment) -> ExitStatus:
    """The matrix on stdout, then the report files; run's and merge's exit status."""
    from .report.terminal import render

    render(record, env.stdout, colour=env.colour)  # first: a failing report file loses nothing
    env.stdout.flush()
    writers: list[tuple[Path | None, Callable[[Path], object]]] = [
        (args.json, lambda f: f.write_text(record.to_text())),
        (args.junit, lambda f: _write_junit(f, record)),
        (args.html, lambda f: _write_html(f, record)),
        (getattr(args, "pcap", None), lambda d: _write_pcaps(d, record, env)),
    ]
    outputs.write_all(writers)
    return ExitStatus(record.exit_code())


def _cmd_setup_senders(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..senders.real.datadir import setup_senders

    return ExitStatus.OK if setup_senders(env.stderr) == 0 else ExitStatus.FAILED


def _cmd_merge(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..core.record import RunRecord
    from .merge import join, load

    records = [(str(path), load(path)) for path in args.records]
    outputs.prepare(args.json, args.junit, args.html, inputs=list(args.records))
    return _report(RunRecord.from_json(join(records)), args, env)


def _write_junit(path: Path, record: RunRecord) -> None:
    from .report.junit import to_junit

    path.write_bytes(to_junit(record))


def _write_html(path: Path, record: RunRecord) -> None:
    from .report.html import to_html

    path.write_text(to_html(record), encoding="utf-8", errors="replace")


def _write_pcaps(folder: Path, record: RunRecord, env: Environment) -> None:
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


def _cmd_demo(args: argparse.Namespace, env: Environment) -> int:
    from .demo_view import command

    return ExitStatus(command(args, env))


# The subcommands: name -> what runs it, with the parsed arguments and the environment.
# Invariant: exactly the subparsers of build_parser() (a test checks), so none goes unhandled.
_COMMANDS: dict[str, Callable[[argparse.Namespace, Environment], int]] = {
    "run": _cmd_run,
    "list": _cmd_list,
    "senders": _cmd_senders,
    "demo": _cmd_demo,
    "coverage": _cmd_coverage,
    "up": _cmd_up,
    "merge": _cmd_merge,
    "scenarios": _cmd_export,
    "setup-senders": _cmd_setup_senders,
}


async def _run_with_progress(scenarios: list[Scenario], senders: list[str], jobs: int,
                             env: Environment, *, capture: bool = False,
                             topology: Topology,
                             claim: Callable[[int | None], int | None] | None = None,
                             pki: PKI | None = None,
                             then: Callable[[PairRecord], object] | None = None) -> RunRecord:
    """`run_all` with the progress shown; `then(result)` after each pair's progress."""
    from ..harness.runner import run_all
    from .progress import progress

    # a worker that claims its pairs (`claim`) counts its own against the whole run's
    with progress(env, len(scenarios) * len(senders)) as tick:
        def finished(result: PairRecord) -> None:
            tick(result)
            if then is not None:
                then(result)

        return await run_all(scenarios, senders, jobs=jobs, progress=finished, capture=capture,
                             topology=topology, claim=claim, pki=pki)


# --workers by default: a process per core pays off from about this many pairs (a worker's
# interpreter and imports cost about half a second of CPU, a pair about 50 ms); the built-in
# matrix at -j 4 on the standard 2-core machine: --workers 2 took 0.70x the wall time of 1
# (docs/performance.md).
WORKERS_FROM = 50
MAX_WORKERS = 4


def default_workers(pairs: int) -> int:
    """The default --workers of a loopback run of `pairs` pairs."""
    if pairs < WORKERS_FROM:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def isolated_jobs() -> int:
    """The default -j of --isolate: two namespaces per core, at most 4. Real MTAs mostly wait
    (the whole real matrix at -j 4 kept a 2-core machine's load average near 1), and every
    cell was the same at -j 4 as at -j 1 (docs/performance.md)."""
    return max(1, min(4, 2 * len(os.sched_getaffinity(0))))


def _worker_shard(text: str) -> tuple[int, int, Path]:
    try:
        which, _, out = text.partition(":")
        index, _, n = which.partition("/")
        if out and 0 <= int(index) < int(n):
            return int(index), int(n), Path(out)
    except ValueError:
        pass
    raise UsageError(f"downgrade-lab: --worker-shard takes I/N:FILE, not {text!r}")


def _isolation(args: argparse.Namespace) -> Topology | None:
    """The topology to run in; None when this process must re-execute itself inside new
    namespaces instead (`--isolate`, lab/harness/isolate.py)."""
    from ..harness.topology import ISOLATED, LOOPBACK

    if not args.isolate:
        return LOOPBACK
    from ..harness import isolate

    if not isolate.inside():
        isolate.unshare_command()  # fail here, in one line, if isolation cannot work
        return None
    isolate.enter()
    return ISOLATED
