"""Several inner runs of one command, each with its share of the pairs (DESIGN §3, issue 15):
`--isolate -j N` (N namespaces of their own, each with the lab's fixed addresses and ports, one
pair at a time) and `--workers P` (P loopback processes, so the pairs use every core). Each
worker is this command again with `--worker-shard I/N:FILE`, or a fork of the command's own
process for loopback workers (`forked`: no interpreter start, imports or scenario files read
again, about half a second of each worker's start); each slot claims its next pair by
the run's plan, whose state is a file in FILE's folder, when it gets free (`Claims`), and their
records are joined here in catalogue order."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import os
import pickle
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from typing import IO, NoReturn

from msgspec import Struct

from .. import __version__
from ..core.model import Scenario
from ..core.record import Encoded, PairRecord, RunRecord
from ..core.selection import START, ClaimPlan
from ..errors import LabError
from . import isolate
from .isolate import Child, die_with_parent, wait_all

INTERRUPTED = 130  # a worker stopped by Ctrl-C (the console's ExitStatus.INTERRUPTED)


def run_workers(argv: Sequence[str], scenarios: Sequence[Scenario], senders: Sequence[str],
                jobs: int, log: IO[str], *, isolated: bool,
                progress: Callable[[], ContextManager[Callable[[Finished], None]]] | None = None,
                work: Work | None = None) -> RunRecord:
    """Up to `jobs` workers over the pairs; KeyboardInterrupt if one was interrupted, LabError
    (its last lines) if one wrote no record. Each is `argv` again with `--worker-shard`, or,
    given `work` (loopback workers of a single-threaded process), a fork of this process that
    calls `work(i, n, share)`: it has the modules and the scenarios already, so it starts
    its first pair at once. `progress` is entered once the workers run (a fork must not see a
    progress bar's thread); its tick hears of every pair a worker finishes, as its log line
    says, while they run."""
    n = min(jobs, len(scenarios) * len(senders))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dgl-shards-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        Claims.create(folder)
        outs = [folder / f"shard{i}.json" for i in range(n)]
        logs = [folder / f"shard{i}.log" for i in range(n)]
        log.write(f"downgrade-lab: {n} {'isolated ' if isolated else ''}workers, "
                  f"{len(scenarios) * len(senders)} pairs\n")
        log.flush()
        tmpdirs = [folder / f"tmp{i}" for i in range(n)]
        for tmpdir in tmpdirs:
            tmpdir.mkdir(mode=0o700)
        if work is not None and not isolated:
            procs: Sequence[Child] = stack.enter_context(
                forked([functools.partial(work, i, n, out) for i, out in enumerate(outs)],
                       logs, tmpdirs))
        else:
            procs = stack.enter_context(isolate.started(
                [[*argv, "--worker-shard", f"{i}/{n}:{out}"] for i, out in enumerate(outs)],
                logs, isolated=isolated, tmpdirs=() if isolated else tmpdirs))
        tick = stack.enter_context(progress()) if progress is not None else None
        watcher = _LogWatcher(logs, tick)
        codes = wait_all(procs, watcher.poll if tick is not None else None, isolated=isolated)
        watcher.poll()
        if INTERRUPTED in codes:
            raise KeyboardInterrupt
        results: list[PairRecord] = []
        for out, worker_log, code in zip(outs, logs, codes, strict=True):
            if not out.exists():
                tail = worker_log.read_text(errors="replace").strip().splitlines()[-5:]
                raise LabError(f"{'isolated ' if isolated else ''}worker failed (exit {code}): "
                               + " / ".join(tail))
            results += read_share(out).results
    place = {(s.id, name): k for k, (s, name) in
             enumerate((s, name) for s in scenarios for name in senders)}
    results.sort(key=lambda r: place[(r.scenario, r.sender)])
    return RunRecord(tuple(results), round(time.monotonic() - started, 3), __version__)


# What a forked worker runs: (its index, the number of workers, the file for its share) ->
# its exit status.
Work = Callable[[int, int, Path], int]


def can_fork() -> bool:
    """Whether this process may fork workers: on Linux, with no other thread (a fork sees only
    the forking thread, and a lock another thread held would stay held in the child)."""
    return sys.platform == "linux" and threading.active_count() == 1


@contextlib.contextmanager
def forked(works: Sequence[Callable[[], int]], logs: Sequence[Path], tmpdirs: Sequence[Path]
           ) -> Iterator[list[Forked]]:
    """A fork of this process for every work, each in a process group of its own (so a
    Ctrl-C at the terminal reaches only this process, which stops them), its output going to
    its log and its TMPDIR the given folder; killed with this process. Whatever still runs when
    the block ends is killed and reaped."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()  # the objects made so far stay out of every collection, here and in the forks
    procs: list[Forked] = []
    try:
        for work, log, tmpdir in zip(works, logs, tmpdirs, strict=True):
            pid = os.fork()
            if pid == 0:
                _child(work, log, tmpdir)
            procs.append(Forked(pid))
        yield procs
    finally:
        gc.unfreeze()
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _child(work: Callable[[], int], log: Path, tmpdir: Path) -> NoReturn:
    """In a forked worker: never returns into the caller's frames (their `finally` blocks
    belong to the parent), whatever happens."""
    code = 1
    try:
        os.setpgid(0, 0)
        die_with_parent()
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        # New streams on the new descriptors: the parent's may hold a lock or buffered bytes.
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                          closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                          errors="backslashreplace", closefd=False)
        os.environ["TMPDIR"] = str(tmpdir)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again
        code = work()
    except KeyboardInterrupt:
        code = INTERRUPTED
    except BaseException:  # noqa: BLE001 - a worker's crash is told in its log, as a process's
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Forked:
    """A forked worker, as `isolate.wait_all` waits for it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def write_share(path: Path, record: RunRecord) -> None:
    """A worker's record for the outer process, pickled: written and read back as the typed
    record in about 0.6x the time of JSON and `RunRecord.from_json` (0.91 s vs 1.43 s for the
    catalogue's record on a busy machine), and the reading is after the last pair. Only ever
    read by `read_share` of the same run, from the run's own folder (mode 0700, made by the
    outer process): never a file from elsewhere; the record a user gets is the JSON the outer
    writes."""
    tmp = path.with_suffix(".part")
    # Each pair's JSON texts go too (`PairRecord.encoded`), made on the worker's core as the
    # pair finished (`cli._work_share`; here for any not made yet): the outer only lays the
    # texts out (the catalogue's record and JUnit file took about 0.2 s after the last pair).
    share = (record, [r.encoded for r in record.results])
    tmp.write_bytes(pickle.dumps(share, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.rename(path)  # the outer sees a whole share or none


def read_share(path: Path) -> RunRecord:
    data = path.read_bytes()
    collecting = gc.isenabled()
    gc.disable()  # no collection passes over the growing record: loads take 0.6x as long
    try:
        share = pickle.loads(data)
    finally:
        if collecting:
            gc.enable()
    match share:
        case (RunRecord() as record, [*encoded]) if len(encoded) == len(record.results):
            for pair, texts in zip(record.results, encoded, strict=True):
                if not isinstance(texts, Encoded):
                    break
                pair.keep_encoded(texts)
            else:
                return record
    raise LabError(f"{path}: not a worker's record")


class Claims:
    """The pairs of one run, claimed one at a time by its workers' slots as they get free:
    where the run's `ClaimPlan` stands (`selection.ClaimState`) in a file of the run's folder
    (`claims`), read and moved on under an exclusive lock. Every worker computes the same
    plan. The folder is the outer process's, so workers in namespaces of their own share it."""

    NAME = "claims"

    def __init__(self, folder: Path, plan: ClaimPlan) -> None:
        self.path = folder / self.NAME
        self.plan = plan

    @classmethod
    def create(cls, folder: Path) -> None:
        (folder / cls.NAME).write_text(" ".join(map(str, START)))

    def __call__(self, finished: int | None = None) -> int | None:
        """The next pair for a slot that just `finished` one (None: its first claim), or None
        when every pair has been claimed."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            rest, stall, running = (int(n) for n in os.read(fd, 64).split())
            pair, state = self.plan.pick((rest, stall, running), finished)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, " ".join(map(str, state)).encode())
            return pair
        finally:
            os.close(fd)  # the lock goes with the descriptor


class Finished(Struct, frozen=True):
    """A pair a worker finished, as its progress line tells (what a progress tick needs)."""

    verdict: str
    scenario: str
    sender: str


# A worker's progress line (frontends/progress.py, not on a terminal):
# `PASS  strip/enforce-warm [reference] (3/164)`.
_LINE = re.compile(r"(PASS|WEAK|FAIL|SKIP|ERROR) +(\S+) \[(.+)\] \(\d+/\d+\)")


class _LogWatcher:
    """Reads the workers' logs as they grow and hands each finished pair to `tick`."""

    def __init__(self, logs: Sequence[Path], tick: Callable[[Finished], None] | None) -> None:
        self.logs = list(logs)
        self.tick = tick
        self.offsets = [0] * len(self.logs)

    def poll(self) -> None:
        if self.tick is None:
            return
        for k, path in enumerate(self.logs):
            try:
                with path.open("rb") as f:
                    f.seek(self.offsets[k])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            whole = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits
            self.offsets[k] += len(whole)
            for line in whole.decode(errors="replace").splitlines():
                m = _LINE.fullmatch(line.strip())
                if m is not None:
                    self.tick(Finished(*m.groups()))
