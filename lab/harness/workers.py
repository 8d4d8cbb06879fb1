"""Several inner runs of one command, each with its share of the pairs (DESIGN §3, issue 15):
`--isolate -j N` (N namespaces of their own, each with the lab's fixed addresses and ports, one
pair at a time) and `--workers P` (P loopback processes, so the pairs use every core). Each
worker is this command again with `--worker-shard I/N:FILE`; each slot claims its next pair by
the run's plan, whose state is a file in FILE's folder, when it gets free (`Claims`), and their
records are joined here in catalogue order."""

from __future__ import annotations

import fcntl
import gc
import os
import pickle
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import __version__
from ..core.model import Scenario
from ..core.record import PairRecord, RunRecord
from ..core.selection import START, ClaimPlan
from ..errors import LabError
from .isolate import run_many

INTERRUPTED = 130  # a worker stopped by Ctrl-C (the console's ExitStatus.INTERRUPTED)


def run_workers(argv: Sequence[str], scenarios: Sequence[Scenario], senders: Sequence[str],
                jobs: int, log: IO[str], *, isolated: bool,
                tick: Callable[[Finished], None] | None = None) -> RunRecord:
    """Up to `jobs` workers over the pairs; KeyboardInterrupt if one was interrupted, LabError
    (its last lines) if one wrote no record. `tick` hears of every pair a worker finishes, as
    its log line says, while they run."""
    n = min(jobs, len(scenarios) * len(senders))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dgl-shards-") as tmp:
        folder = Path(tmp)
        Claims.create(folder)
        outs = [folder / f"shard{i}.json" for i in range(n)]
        logs = [folder / f"shard{i}.log" for i in range(n)]
        log.write(f"downgrade-lab: {n} {'isolated ' if isolated else ''}workers, "
                  f"{len(scenarios) * len(senders)} pairs\n")
        tmpdirs = [folder / f"tmp{i}" for i in range(n)]
        for tmpdir in tmpdirs:
            tmpdir.mkdir(mode=0o700)
        watcher = _LogWatcher(logs, tick)
        codes = run_many([[*argv, "--worker-shard", f"{i}/{n}:{out}"]
                          for i, out in enumerate(outs)], logs, isolated=isolated,
                         watch=watcher.poll if tick is not None else None,
                         tmpdirs=() if isolated else tmpdirs)
        watcher.poll()
        if INTERRUPTED in codes:
            raise KeyboardInterrupt
        results: list[PairRecord] = []
        for out, worker_log, code in zip(outs, logs, codes, strict=True):
            if not out.exists():
                tail = worker_log.read_text(errors="replace").strip().splitlines()[-5:]
                raise LabError(f"isolated worker failed (exit {code}): " + " / ".join(tail))
            results += read_share(out).results
    place = {(s.id, name): k for k, (s, name) in
             enumerate((s, name) for s in scenarios for name in senders)}
    results.sort(key=lambda r: place[(r.scenario, r.sender)])
    return RunRecord(tuple(results), round(time.monotonic() - started, 3), __version__)


def write_share(path: Path, record: RunRecord) -> None:
    """A worker's record for the outer process, pickled: written and read back as the typed
    record in about 0.6x the time of JSON and `RunRecord.from_json` (0.91 s vs 1.43 s for the
    catalogue's record on a busy machine), and the reading is after the last pair. Only ever
    read by `read_share` of the same run, from the run's own folder (mode 0700, made by the
    outer process): never a file from elsewhere; the record a user gets is the JSON the outer
    writes."""
    tmp = path.with_suffix(".part")
    tmp.write_bytes(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.rename(path)  # the outer sees a whole share or none


def read_share(path: Path) -> RunRecord:
    data = path.read_bytes()
    collecting = gc.isenabled()
    gc.disable()  # no collection passes over the growing record: loads take 0.6x as long
    try:
        record = pickle.loads(data)
    finally:
        if collecting:
            gc.enable()
    if not isinstance(record, RunRecord):
        raise LabError(f"{path}: not a worker's record")
    return record


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


@dataclass(frozen=True)
class Finished:
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
