"""`downgrade-lab run` progress: a bar on a terminal, one plain line per pair elsewhere, both on
stderr; stdout (the matrix) and the --json record are the same either way."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from downgrade_lab.frontends.cli import Environment, main

ROOT = Path(__file__).resolve().parent.parent
STRIP = str(ROOT / "scenarios" / "strip")
SELECT = ["-k", "starttls-enforce or no-policy"]  # a few pairs, both verdicts for opportunistic


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(stderr: io.StringIO, tmp_path: Path, name: str) -> tuple[int, str, dict[str, object]]:
    out = io.StringIO()
    record = tmp_path / f"{name}.json"
    code = main(["run", STRIP, *SELECT, "--json", str(record)], Environment(stdout=out, stderr=stderr))
    return code, out.getvalue(), json.loads(record.read_text())


def test_plain_lines_on_stderr_when_not_a_terminal(tmp_path: Path) -> None:
    err = io.StringIO()
    code, out, record = run(err, tmp_path, "plain")
    assert code == 1  # opportunistic fails the enforce ones
    lines = err.getvalue().splitlines()
    results = record["results"]
    assert isinstance(results, list)
    assert len(lines) == len(results)  # one line per finished pair, nothing else
    for line in lines:
        assert re.fullmatch(r"(PASS |WEAK |FAIL |SKIP |ERROR) \S+ \[(reference|opportunistic)\] "
                            rf"\(\d+/{len(results)}\)", line), line
    assert f"({len(results)}/{len(results)})" in lines[-1]
    expected = {f"{r['verdict']:5} {r['scenario']} [{r['sender']}]" for r in results}
    assert {line.rsplit(" (", 1)[0] for line in lines} == expected
    assert "PASS" not in out.splitlines()[0] and "scenario" in out  # stdout: the matrix only


def test_a_bar_with_running_counts_on_a_terminal(tmp_path: Path) -> None:
    err = Tty()
    code, out, record = run(err, tmp_path, "bar")
    drawn = err.getvalue()
    assert "running" in drawn and "\x1b[" in drawn  # rich drew (and then cleared) a live bar
    summary = record["summary"]
    assert isinstance(summary, dict)
    total = sum(summary.values())
    assert f"{total}/{total}" in drawn and f"FAIL {summary['FAIL']}" in drawn
    assert "[reference]" not in drawn  # no plain lines on a terminal


def test_stdout_and_the_record_do_not_depend_on_the_progress_mode(tmp_path: Path) -> None:
    _, plain_out, plain = run(io.StringIO(), tmp_path, "a")
    _, bar_out, bar = run(Tty(), tmp_path, "b")

    def cells(record: dict[str, object]) -> list[tuple[str, str, str]]:
        results = record["results"]
        assert isinstance(results, list)
        return [(r["scenario"], r["sender"], r["verdict"]) for r in results]

    assert cells(plain) == cells(bar) and plain.keys() == bar.keys()

    def strip_times(text: str) -> str:
        return re.sub(r"in \d+\.\d s|queued as \w+", "", text)  # times, receiver queue ids

    assert strip_times(plain_out) == strip_times(bar_out)
