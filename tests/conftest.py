"""Hypothesis profiles (`make fuzz` runs the hostile-input tests under `fuzz`: many more
examples, no deadline; tests that set their own `max_examples` keep it under any profile), the
`run_tmp` fixture, and the closing summary of skipped tests: one line per group saying how to
enable it (tests/skips.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.skips import summary_lines

settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def run_tmp() -> Iterator[Path]:
    """The TMPDIR of one test's isolated runs: under /tmp and searchable by others, since
    Postfix and Exim drop root and must reach their instance folders (pytest's own tmp_path
    sits below a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="dgl-test-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the run: the skipped tests in groups, each with how to enable it, one line each."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            reasons.append(str(longrepr[2]).removeprefix("Skipped: "))
    if reasons:
        terminalreporter.section("skipped: how to enable each group", sep="-")
        for line in summary_lines(reasons):
            terminalreporter.write_line(line)
