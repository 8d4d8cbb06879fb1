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
        shares = [ShareReader(out) for out in outs]
        for share in shares:
            stack.callback(share.close)

        def watch() -> None:  # the progress, and the pairs done so far: little is left after
            watcher.poll()
            for share in shares:
                share.poll()

        codes = wait_all(procs, watch, isolated=isolated)
        watcher.poll()
        if INTERRUPTED in codes:
            raise KeyboardInterrupt
        results: list[PairRecord] = []
        for out, worker_log, code, share in zip(outs, logs, codes, shares, strict=True):
            if not out.exists():
                tail = worker_log.read_text(errors="replace").strip().splitlines()[-5:]
                raise LabError(f"{'isolated ' if isolated else ''}worker failed (exit {code}): "
                               + " / ".join(tail))
            results += share.pairs()
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


class ShareWriter:
    """A worker's pairs for the outer process, each written as it finishes (`add`), so the
    outer reads them while the run goes on (`ShareReader`) and little is left for after the
    last pair (the catalogue's whole share took 45-90 ms to write and 40 ms to read there).
    Frames of an 8-byte length and a pickle: (the pair, its JSON texts made on the worker's
    core, `PairRecord.encoded`) each, then ("end", how many). Only ever read by the
    `ShareReader` of the same run, from the run's own folder (mode 0700, made by the outer
    process): never a file from elsewhere; the record a user gets is the JSON the outer
    writes. The file is `PATH.part` until `close()` renames it: a share without its end frame
    is a worker that failed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fd = os.open(_part(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                           0o600)

    def add(self, pair: PairRecord) -> None:
        self._frame((pair, pair.encoded))
        self.count += 1

    def close(self) -> None:
        self._frame((_END, self.count))
        os.close(self._fd)
        _part(self.path).rename(self.path)  # the outer sees a whole share or a failed worker

    def _frame(self, value: object) -> None:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        frame = len(data).to_bytes(_LENGTH, "big") + data
        while frame:  # one write but for a signal or a full disk; appended whole, in order
            frame = frame[os.write(self._fd, frame):]


_END = "end"
_LENGTH = 8


def _part(path: Path) -> Path:
    return path.with_suffix(".part")


class ShareReader:
    """The outer's side of a `ShareWriter`: `poll()` takes the pairs whose frames are whole,
    while the worker runs; `pairs()` once it has ended. LabError for what is not a worker's
    share, or one without its end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = False
        self._file: IO[bytes] | None = None
        self._buffer = b""
        self._pairs: list[PairRecord] = []

    def poll(self) -> None:
        if self._file is None:
            for candidate in (_part(self.path), self.path):  # the worker may rename it now
                with contextlib.suppress(FileNotFoundError):
                    self._file = candidate.open("rb")  # kept: the same file once renamed
                    break
            else:
                return
        self._buffer += self._file.read()
        while len(self._buffer) >= _LENGTH:
            size = int.from_bytes(self._buffer[:_LENGTH], "big")
            if len(self._buffer) < _LENGTH + size:
                break  # a frame still being written waits
            frame, self._buffer = (self._buffer[_LENGTH:_LENGTH + size],
                                   self._buffer[_LENGTH + size:])
            self._take(frame)

    def _take(self, frame: bytes) -> None:
        try:
            value = pickle.loads(frame)
        except Exception:  # noqa: BLE001 - any unpickling failure: not a share
            value = None
        match value:
            case (PairRecord() as pair, Encoded() as texts) if not self.done:
                pair.keep_encoded(texts)
                self._pairs.append(pair)
                return
            case (str() as end, int() as count) if (end == _END and count == len(self._pairs)
                                                    and not self.done):
                self.done = True
                return
        raise LabError(f"{self.path}: not a worker's record")

    def pairs(self) -> list[PairRecord]:
        """Every pair of the share, once its worker has ended."""
        try:
            self.poll()
        finally:
            self.close()
        if not self.done or self._buffer:
            raise LabError(f"{self.path}: not a worker's record")
        return self._pairs

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


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
