"""Shared by the tests that run the lab in its own namespaces (`--isolate`): whether this
machine can, and what a finished run left behind. The `run_tmp` fixture is in conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from downgrade_lab.harness.isolate import IsolationError, unshare_command


def isolation_problem() -> str | None:
    try:
        unshare_command()
    except IsolationError as exc:
        return str(exc)
    return None


def need_isolation() -> None:
    """Skip unless this machine can make the lab's namespaces; on CI (CI set), where .ci/run
    runs as root, fail instead."""
    problem = isolation_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"--isolate should work on CI: {problem}")
        pytest.skip(problem)


def leftovers(tmp: Path) -> list[str]:
    """What a finished run left: files under its TMPDIR, processes whose environment names it,
    mounts that mention it."""
    found = [f"file {p}" for p in tmp.rglob("*")] if tmp.exists() else []
    needle = str(tmp).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes() or needle in (proc / "cmdline").read_bytes():
                found.append(f"process {proc.name} {(proc / 'cmdline').read_bytes()[:80]!r}")
        except OSError:
            continue
    found += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(tmp) in line]
    return found
