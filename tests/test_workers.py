"""Runs split across processes (`--workers P`, `--isolate -j N`): the workers claim every pair
exactly once (`workers.Claims` over `selection.claim_order`), and the merged record equals the
one-process record."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import astuple

from downgrade_lab import __version__
from downgrade_lab.core.model import Scenario
from downgrade_lab.core.record import PairRecord, RunRecord, dumps_record
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.core.selection import ClaimPlan, claim_order
from downgrade_lab.errors import LabError
from downgrade_lab.frontends.cli import Environment, main
from downgrade_lab.harness.isolate import wait_all
from downgrade_lab.harness.workers import Claims, forked

ROOT = Path(__file__).resolve().parent.parent
PICKS = ["baseline/healthy", "strip/starttls-enforce-warm", "fetch/slow-but-in-time",
         "tlsrpt/cached-fetch-failure"]


def scenarios() -> list[Scenario]:
    return [load_scenario(ROOT / "scenarios" / f"{p}.toml", p) for p in PICKS]


def test_the_claim_order_is_every_pair_stalled_then_longest_first() -> None:
    picked = scenarios()
    order = claim_order(picked, ["reference", "opportunistic"])
    assert sorted(order) == list(range(len(PICKS) * 2))
    slow = PICKS.index("fetch/slow-but-in-time") * 2  # its policy host waits 1 s: it stalls
    warm = PICKS.index("strip/starttls-enforce-warm") * 2  # two steps: 20 s allowed, x2 senders
    assert order[:4] == [slow, slow + 1, warm, warm + 1]  # catalogue order among equals
    assert order == claim_order(picked, ["reference", "opportunistic"])  # every worker alike


def test_claims_hand_out_each_pair_once_then_none(tmp_path: Path) -> None:
    Claims.create(tmp_path)
    plan = ClaimPlan(rest=(3, 0, 4, 1, 2), stalls=(5,), limit=1)
    first, second = Claims(tmp_path, plan), Claims(tmp_path, plan)  # two workers, one file
    got = [first(), second(), second(3), first(5), first(0), second(4)]
    assert got == [5, 3, 0, 4, 1, 2]
    assert first(1) is None and second(2) is None


def _claim_all(folder: str, out: str) -> None:
    take = Claims(Path(folder), ClaimPlan(tuple(range(40, 400)), tuple(range(40)), 2))
    mine: list[int] = []
    while (i := take(mine[-1] if mine else None)) is not None:
        mine.append(i)
    Path(out).write_text(json.dumps(mine))


def test_claims_across_processes_are_disjoint_and_complete(tmp_path: Path) -> None:
    Claims.create(tmp_path)
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    procs = [multiprocessing.get_context("spawn").Process(target=_claim_all,
                                                          args=(str(tmp_path), str(o)))
             for o in outs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    shares = [json.loads(o.read_text()) for o in outs]
    assert sorted(i for share in shares for i in share) == list(range(400))


def test_workers_record_equals_one_process(tmp_path: Path) -> None:
    paths = [str(ROOT / "scenarios" / f"{p}.toml") for p in PICKS]
    records: list[dict[str, Any]] = []
    for extra in ([], ["--workers", "2"]):
        out = tmp_path / f"record{len(records)}.json"
        code = main(["run", *paths, "--json", str(out), *extra],
                    Environment(stdout=io.StringIO(), stderr=io.StringIO()))
        assert code in (0, 1)
        records.append(json.loads(out.read_text()))
    cells = [[(r["scenario"], r["sender"], r["verdict"], [s["outcome"] for s in r["steps"]])
              for r in rec["results"]] for rec in records]
    assert cells[0] == cells[1]
    assert records[0]["summary"] == records[1]["summary"]
    assert records[0]["lab_version"] == records[1]["lab_version"] == __version__


def test_workers_must_be_at_least_one() -> None:
    err = io.StringIO()
    code = main(["run", str(ROOT / "scenarios" / "baseline" / "healthy.toml"), "--workers", "0"],
                Environment(stdout=io.StringIO(), stderr=err))
    assert code == 2 and "--workers takes a number of processes from 1 up" in err.getvalue()


def test_workers_progress_counts_every_pair_of_the_run(tmp_path: Path) -> None:
    paths = [str(ROOT / "scenarios" / f"{p}.toml") for p in PICKS]
    err = io.StringIO()
    code = main(["run", *paths, "--workers", "2"], Environment(stdout=io.StringIO(), stderr=err))
    assert code in (0, 1)
    total = len(PICKS) * 2
    lines = [line for line in err.getvalue().splitlines() if line.endswith(f"/{total})")]
    assert [line.rsplit("(", 1)[1] for line in lines] == [f"{k}/{total})" for k in
                                                           range(1, total + 1)]
    assert {line.split("[")[1].split("]")[0] for line in lines} == {"reference", "opportunistic"}


def _share(path: Path, pairs: Sequence[PairRecord]) -> None:
    from downgrade_lab.harness.workers import ShareWriter

    writer = ShareWriter(path)
    for pair in pairs:
        writer.add(pair)
    writer.close()


def test_a_share_reads_back_as_the_record_it_was(tmp_path: Path) -> None:
    from downgrade_lab.harness.workers import ShareReader

    pairs = (PairRecord("a/b", "reference", "PASS", ""), PairRecord("a/c", "x", "SKIP", "caf\u00e9"))
    record = RunRecord(pairs, 1.5, __version__)
    _share(tmp_path / "share", pairs)
    back = RunRecord(tuple(ShareReader(tmp_path / "share").pairs()), 1.5, __version__)
    assert back == record and not (tmp_path / "share.part").exists()
    assert (tmp_path / "share").stat().st_mode & 0o777 == 0o600
    # each pair's texts come made by the worker, and are what the outer would make
    assert all("encoded" in p.__dict__ for p in back.results)
    assert [p.encoded for p in back.results] == [PairRecord(*astuple(p)).encoded
                                                 for p in back.results]
    assert back.to_text() == dumps_record(record.to_json())


def test_the_outer_reads_a_share_while_it_grows(tmp_path: Path) -> None:
    from downgrade_lab.harness.workers import ShareReader, ShareWriter

    path = tmp_path / "share"
    reader = ShareReader(path)
    reader.poll()  # nothing written yet: nothing read, no error
    writer = ShareWriter(path)
    seen = []
    for k in range(3):
        writer.add(PairRecord(f"a/{k}", "reference", "PASS", ""))
        reader.poll()
        seen.append(len(reader._pairs))
    with (tmp_path / "share.part").open("ab") as f:  # half a frame: waits for the rest
        f.write((1000).to_bytes(8, "big") + b"x")
    reader.poll()
    reader.close()
    os.close(writer._fd)
    assert seen == [1, 2, 3] and len(reader._pairs) == 3 and not reader.done


@pytest.mark.parametrize("damage", ["no-end", "torn-frame", "not-pickle", "not-a-pair",
                                    "count-off", "after-end"])
def test_what_is_not_a_workers_share_is_refused(tmp_path: Path, damage: str) -> None:
    from downgrade_lab.harness.workers import ShareReader

    path = tmp_path / "share"
    one = [PairRecord("a/b", "r", "PASS", "")]

    def frame(value: object) -> bytes:
        data = value if isinstance(value, bytes) else pickle.dumps(value)
        return len(data).to_bytes(8, "big") + data

    if damage == "no-end":  # a worker that died after its pair: its file never renamed
        from downgrade_lab.harness.workers import ShareWriter

        writer = ShareWriter(path)
        writer.add(one[0])
        os.close(writer._fd)
        (tmp_path / "share.part").rename(path)
    else:
        _share(path, one)
        data = path.read_bytes()
        first = 8 + int.from_bytes(data[:8], "big")
        if damage == "torn-frame":
            path.write_bytes(data[:-3])
        elif damage == "not-pickle":
            path.write_bytes(frame(b"\x80not a pickle") + data)
        elif damage == "not-a-pair":
            path.write_bytes(frame(("x", "y", "z")) + data)
        elif damage == "count-off":
            path.write_bytes(data[:first] + frame(("end", 2)))
        else:
            path.write_bytes(data + frame(("end", 1)))
    with pytest.raises(LabError, match="not a worker's record"):
        ShareReader(path).pairs()


def cells(record: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    return [(r["scenario"], r["sender"], r["verdict"], [s["outcome"] for s in r["steps"]])
            for r in record["results"]]


def test_forked_workers_of_the_command_record_what_one_process_does(tmp_path: Path) -> None:
    """`downgrade-lab run --workers 2` as its own process forks its workers (one thread, on
    Linux): the record is the one-process record, and nothing is left in TMPDIR."""
    paths = [str(ROOT / "scenarios" / f"{p}.toml") for p in PICKS]
    records = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.json"
        tmp = tmp_path / f"tmp{workers}"
        tmp.mkdir()
        done = subprocess.run([sys.executable, "-m", "downgrade_lab", "run", *paths, "--workers",
                               workers, "--json", str(out)], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "TMPDIR": str(tmp)}, timeout=120)
        assert done.returncode in (0, 1), done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert list(tmp.iterdir()) == []
        records.append(json.loads(out.read_text()))
    assert cells(records[0]) == cells(records[1])
    assert records[0]["summary"] == records[1]["summary"]


def _work(code: int) -> int:
    print("out", tempfile.gettempdir())
    print("err", os.getpid() != os.getpgid(0), file=sys.stderr)
    if code == 130:
        raise KeyboardInterrupt
    if code == 99:
        raise RuntimeError("the work broke")
    return code


@pytest.mark.parametrize(("code", "status"), [(0, 0), (3, 3), (130, 130), (99, 1)])
def test_a_forked_worker_writes_its_log_and_exits_with_its_status(tmp_path: Path, code: int,
                                                                  status: int) -> None:
    """A fork runs its work with TMPDIR, stdout and stderr of its own, in a process group of
    its own, and never returns into the parent: its status is the work's, 130 for Ctrl-C, 1
    with the traceback in its log for a crash."""
    log, tmp = tmp_path / "log", tmp_path / "t"
    tmp.mkdir()
    with forked([lambda: _work(code)], [log], [tmp]) as procs:
        assert wait_all(procs, isolated=False) == [status]
    text = log.read_text()
    assert f"out {tmp}" in text
    assert "err False" in text  # the worker leads a process group of its own
    assert ("RuntimeError: the work broke" in text) == (code == 99)


def test_waiting_for_workers_wakes_when_one_ends_and_not_for_one_that_has() -> None:
    """`wait_all`'s pause ends as soon as a running child ends (a pidfd), not at the end of
    its timeout; a child that ended before is not waited on again, so the pause lasts its
    whole timeout instead of spinning."""
    from downgrade_lab.harness.isolate import _Exits

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    exits = _Exits([quick, slow])
    try:
        started = time.monotonic()
        exits.wait([None, None], 30.0)
        assert time.monotonic() - started < 15.0  # woken by the quick one's end
        assert quick.wait() == 0
        started = time.monotonic()
        exits.wait([0, None], 0.3)  # the quick one is done: only the slow one counts
        assert time.monotonic() - started >= 0.25
    finally:
        exits.close()
        slow.kill()
        slow.wait()
