"""Hypothesis profiles. `make fuzz` runs the hostile-input tests under `fuzz`: many more
examples, no deadline. Tests that set their own `max_examples` keep it under any profile."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
