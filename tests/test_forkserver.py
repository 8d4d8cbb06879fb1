"""The fork server that starts `mta-sts-daemon` for each postfix-mta-sts pair without its
imports: real processes (a server, its forked children), a program of our own as the entry."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from downgrade_lab.errors import SenderError
from downgrade_lab.senders.real.base import kill_and_wait
from downgrade_lab.senders.real.forkserver import ForkServer, script_interpreter
from tests.events import wait_until

PROGRAM = """
import os, sys, time
IMPORTED_PID = os.getpid()

def main():
    out = os.environ["OUT"]
    with open(out, "w") as f:
        f.write(f"{sys.argv[1:]} {os.environ.get('PAIR')} {IMPORTED_PID != os.getpid()}")
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "exit":
        return int(sys.argv[2])
    if sys.argv[1] == "raise":
        raise RuntimeError("broken at start")
    time.sleep(60)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ForkServer]:
    (tmp_path / "prog.py").write_text(PROGRAM)
    s = ForkServer(sys.executable, "prog", "main", {**os.environ, "PYTHONPATH": str(tmp_path)})
    yield s
    s.close()


def test_a_child_gets_its_own_argv_environment_and_stderr_and_is_not_the_server(
        server: ForkServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    child = server.spawn(["prog", "exit", "3"], {"OUT": str(out), "PAIR": "one"}, tmp_path / "err")
    wait_until(lambda: child.returncode is not None, 10, "the child to exit")
    assert child.returncode == 3
    assert out.read_text() == "['exit', '3'] one True"
    assert (tmp_path / "err").read_text() == "to stderr\n"


def test_a_crash_at_start_is_an_exit_status_and_a_traceback_in_stderr(
        server: ForkServer, tmp_path: Path) -> None:
    child = server.spawn(["prog", "raise"], {"OUT": str(tmp_path / "out")}, tmp_path / "err")
    wait_until(lambda: child.returncode is not None, 10, "the child to exit")
    assert child.returncode == 1
    assert "RuntimeError: broken at start" in (tmp_path / "err").read_text()


async def test_kill_and_wait_stops_a_running_child(server: ForkServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    child = server.spawn(["prog", "sleep"], {"OUT": str(out)}, tmp_path / "err")
    wait_until(out.exists, 10, "the child to start")
    assert child.returncode is None
    await kill_and_wait(child)
    assert child.returncode == -9
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)


def test_closing_the_server_kills_its_children(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    server = ForkServer(sys.executable, "prog", "main", {**os.environ, "PYTHONPATH": str(tmp_path)})
    out = tmp_path / "out"
    child = server.spawn(["prog", "sleep"], {"OUT": str(out)}, tmp_path / "err")
    wait_until(out.exists, 10, "the child to start")
    server.close()
    assert not server.alive
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            break
    else:
        pytest.fail("the child outlived its server")


def test_a_server_that_cannot_import_its_program_says_why_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SenderError, match=r"fork server exited with status 1 at start: "
                                          r"ModuleNotFoundError: No module named 'no_such_prog'"):
        ForkServer(sys.executable, "no_such_prog", "main", dict(os.environ))


@pytest.mark.parametrize(("first_line", "expected"), [
    (b"#!/opt/venv/bin/python3\n", "/opt/venv/bin/python3"),
    (b"#!/usr/bin/env python3\n", "python3"),
    (b"#!/usr/bin/python3.11 -s\n", "/usr/bin/python3.11"),
    (b"#!/bin/sh\n", None),  # a shell wrapper: started the usual way
    (b"#!/usr/bin/env node\n", None),
    (b"\x7fELF\x02\x01", None),  # a binary
    (b"#!\n", None),
])
def test_script_interpreter_is_the_python_of_the_shebang_line(
        tmp_path: Path, first_line: bytes, expected: str | None) -> None:
    script = tmp_path / "daemon"
    script.write_bytes(first_line + b"rest\n")
    assert script_interpreter(str(script)) == expected


def test_script_interpreter_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert script_interpreter(str(tmp_path / "missing")) is None
