"""scripts/real_matrix_check.py: the check `make real-matrix` ends with (pure: a record and a
page in, a table and an exit status out)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_matrix_check",
                                                  ROOT / "scripts" / "real_matrix_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(tmp_path: Path, *cells: tuple[str, str]) -> Path:
    results = [{"scenario": f"s{i}", "sender": sender, "verdict": verdict, "reason": "why"}
               for i, (sender, verdict) in enumerate(cells)]
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"results": results}))
    return path


def test_the_docs_table_parses_for_every_real_sender() -> None:
    table = _check().documented((ROOT / "docs" / "senders.md").read_text())
    assert set(table) == {"postfix", "postfix-mta-sts", "postfix-mta-sts-strict", "exim",
                          "mailauth", "opensmtpd", "postfix-dane", "exim-dane"}
    # each row covers the whole catalogue once
    scenarios = len(list((ROOT / "scenarios").rglob("*.toml")))
    assert all(sum(counts) == scenarios for counts in table.values())


def test_error_cells_fail_and_drift_only_warns(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    check = _check()
    doc = tmp_path / "senders.md"
    doc.write_text("## The matrices as measured\n\n| sender | PASS | WEAK | FAIL | SKIP | ERROR |\n"
                   "|---|---|---|---|---|---|\n| `exim` | 1 | 0 | 1 | 0 | 0 |\n")
    same = _record(tmp_path, ("exim", "PASS"), ("exim", "FAIL"))
    assert check.main([str(same), str(doc), "--strict"]) == 0
    assert "same" in capsys.readouterr().out
    moved = _record(tmp_path, ("exim", "PASS"), ("exim", "PASS"))
    assert check.main([str(moved), str(doc)]) == 0
    assert "DIFFERS: 1 0 1 0 0" in capsys.readouterr().out
    assert check.main([str(moved), str(doc), "--strict"]) == 1
    broken = _record(tmp_path, ("exim", "PASS"), ("exim", "ERROR"))
    assert check.main([str(broken), str(doc)]) == 1
    assert "ERROR s1 x exim: why" in capsys.readouterr().err
