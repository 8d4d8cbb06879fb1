"""The bundled catalogue (`builtin`, `builtin/FOLDER`), `scenarios export`, `coverage` to
stdout, `--version`, `run --shard`, `merge`, and where the real senders' data lives (issue 13).
The wheel itself is tests/test_new_user.py's."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import downgrade_lab
from downgrade_lab.core.scenario import discover
from downgrade_lab.core.scenariofiles import builtin_root, is_builtin
from downgrade_lab.errors import LabError, ScenarioError
from downgrade_lab.frontends import up
from downgrade_lab.frontends.cli import Environment, main
from downgrade_lab.frontends.merge import MergeError, join
from downgrade_lab.senders.real import datadir, exim, mailauth

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, Environment(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def test_builtin_is_the_checkouts_catalogue_with_the_same_ids() -> None:
    # the same files (a link in a checkout, a copy in an sdist or a wheel)
    assert sorted(p.relative_to(builtin_root()).as_posix() for p in builtin_root().rglob("*.toml")) \
        == sorted(p.relative_to(ROOT / "scenarios").as_posix() for p in (ROOT / "scenarios").rglob("*.toml"))
    assert [s.id for s in discover(["builtin"])] == [s.id for s in discover([ROOT / "scenarios"])]
    strip = [s.id for s in discover(["builtin/strip"])]
    assert strip and all(i.startswith("strip/") for i in strip)
    assert [s.id for s in discover(["builtin/strip/no-policy.toml"])] == ["strip/no-policy"]
    assert [s.id for s in discover(["builtin/strip/", "builtin/mx"])][:len(strip)] == strip


@pytest.mark.parametrize(("given", "builtin"), [
    ("builtin", True), ("builtin/strip", True), ("builtin/", True), ("builtins", False),
    ("./builtin", False), ("scenarios", False), (Path("builtin"), False)])
def test_what_names_the_catalogue(given: str | Path, builtin: bool) -> None:
    assert is_builtin(given) is builtin


@pytest.mark.parametrize(("path", "words"), [
    ("builtin/nope", "no such folder or file in the bundled catalogue (folders: baseline,"),
    ("builtin/../pyproject.toml", "not a folder of the bundled catalogue"),
    ("builtin//etc", "no such folder or file in the bundled catalogue"),
])
@pytest.mark.parametrize("command", ["run", "list", "coverage"])
def test_a_bad_builtin_path_is_one_line_exit_2(command: str, path: str, words: str) -> None:
    code, out, err = run([command, path])
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_list_defaults_to_the_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no scenarios/ here
    code, out, _ = run(["list"])
    assert code == 0 and out == run(["list", str(ROOT / "scenarios")])[1]
    assert out.count("\n") == len(list((ROOT / "scenarios").rglob("*.toml")))


def test_coverage_prints_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["coverage"])
    assert code == 0 and out == (ROOT / "docs" / "conformance.md").read_text()
    assert list(tmp_path.iterdir()) == []
    assert run(["coverage", "--check"])[0] == 2
    code, out, _ = run(["coverage", "-o", "page.md"])
    assert code == 0 and (tmp_path / "page.md").read_text() == (ROOT / "docs" / "conformance.md").read_text()
    assert run(["coverage", "-o", "page.md", "--check"])[0] == 0


def test_export_copies_the_catalogue_with_its_ids(tmp_path: Path) -> None:
    code, out, err = run(["scenarios", "export", str(tmp_path / "mine")])
    assert code == 0, err
    assert [s.id for s in discover([tmp_path / "mine"])] == [s.id for s in discover(["builtin"])]
    code, _, err = run(["scenarios", "export", str(tmp_path / "mine")])
    assert code == 2 and "not an empty folder" in err and err.count("\n") == 1
    assert run(["scenarios"])[0] == 2


def test_version() -> None:
    assert run(["--version"]) == (0, f"downgrade-lab {downgrade_lab.__version__}\n", "")
    code, _, err = run([])
    assert code == 2 and "required: command" in err


@pytest.mark.parametrize("shard", ["3/2", "0/1", "x", "1/0", "2"])
def test_a_bad_shard_is_one_line_exit_2(shard: str) -> None:
    code, out, err = run(["run", "--shard", shard])
    assert code == 2 and out == "" and err.count("\n") == 1 and "--shard" in err, err


def _record(*cells: tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    return {**extra, "results": [{"scenario": s, "sender": n, "verdict": v, "reason": "",
                                  "duration_s": 1.0, "steps": []} for s, n, v in cells],
            "summary": {}, "duration_s": 2.0}


def test_join_orders_by_scenario_and_recounts() -> None:
    merged = join([("a.json", _record(("b/x", "reference", "PASS"), ("b/x", "opportunistic", "FAIL"),
                                      schema_version="1.0", lab_version="0.2.0")),
                   ("b.json", _record(("a/y", "reference", "WEAK")))])
    assert [(r["scenario"], r["sender"]) for r in merged["results"]] == [
        ("a/y", "reference"), ("b/x", "reference"), ("b/x", "opportunistic")]
    assert merged["summary"] == {"PASS": 1, "WEAK": 1, "FAIL": 1, "SKIP": 0, "ERROR": 0}
    assert merged["schema_version"] == "1.0" and merged["lab_version"] == "0.2.0"
    assert merged["duration_s"] == 4.0


def test_join_refuses_a_cell_twice() -> None:
    with pytest.raises(MergeError, match="b/x x reference is in both a.json and b.json"):
        join([("a.json", _record(("b/x", "reference", "PASS"))),
              ("b.json", _record(("b/x", "reference", "PASS")))])


@pytest.mark.parametrize(("content", "words"), [
    ('{"schema_version": "2.0", "results": []}', "schema_version '2.0', this lab reads 1.x"),
    ('{"schema_version": 2, "results": []}', "schema_version 2, this lab reads 1.x"),
    ("not json", "not JSON"),
    ("[]", "not a run record"),
    ('{"results": [{"scenario": "a", "sender": "b", "verdict": "MAYBE"}]}', "not a run record"),
    (b"\xff\xfe", "not JSON"),
])
def test_merge_refuses_in_one_line(tmp_path: Path, content: str | bytes, words: str) -> None:
    f = tmp_path / "r.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = run(["merge", str(f)])
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err
    assert run(["merge", str(tmp_path / "missing.json")])[0] == 2


def test_shards_and_merge_give_the_cells_of_one_run(tmp_path: Path) -> None:
    for k in (1, 2):
        code, _, err = run(["run", "builtin/strip/no-policy.toml", "builtin/tls-required",
                            "--shard", f"{k}/2", "--json", str(tmp_path / f"s{k}.json")])
        assert code == 0, err
    code, one, _ = run(["run", "builtin/strip/no-policy.toml", "builtin/tls-required",
                        "--json", str(tmp_path / "one.json")])
    code, merged, err = run(["merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                             "--json", str(tmp_path / "m.json"), "--junit", str(tmp_path / "m.xml")])
    assert code == 0, err

    def cells(name: str) -> list[tuple[str, str, str]]:
        record = json.loads((tmp_path / name).read_text())
        return sorted((r["scenario"], r["sender"], r["verdict"]) for r in record["results"])

    assert cells("m.json") == cells("one.json") and len(cells("one.json")) == 4
    assert merged.splitlines()[:3] == one.splitlines()[:3]
    assert (tmp_path / "m.xml").read_bytes().startswith(b"<?xml")


def test_up_takes_a_bundled_scenario_by_its_catalogue_id() -> None:
    scenario, step = up.choose("builtin/strip/no-policy.toml", 1)
    assert scenario.id == "strip/no-policy" and step is scenario.steps[0]
    with pytest.raises(LabError, match="a folder"):
        up.choose("builtin/strip", 1)
    with pytest.raises(ScenarioError, match="bundled catalogue"):
        up.choose("builtin/strip/nope.toml", 1)


def test_the_plugin_takes_builtin_paths() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([sys.executable, "-m", "pytest", "--lab-scenarios", "builtin/tls-required",
                           "--lab-sender", "reference", "--co", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "builtin/tls-required::tls-required/no-header[reference]" in done.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "--lab-scenarios", "builtin/nope",
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=50)
    assert done.returncode == 4 and "--lab-scenarios builtin/nope: no such folder" in done.stderr


def test_the_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("DOWNGRADE_LAB_DATA", "XDG_DATA_HOME", "SUDO_USER", exim.ROOT_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datadir.data_dir() == tmp_path / ".local" / "share" / "downgrade-lab"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert datadir.data_dir() == tmp_path / ".local" / "share" / "downgrade-lab"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert datadir.data_dir() == tmp_path / "xdg" / "downgrade-lab"
    monkeypatch.setenv("DOWNGRADE_LAB_DATA", str(tmp_path / "mine"))
    assert datadir.data_dir() == tmp_path / "mine"
    assert exim.exim_root() == tmp_path / "mine" / "exim"
    assert mailauth.node_dir() == tmp_path / "mine" / "node"
    ok, why = exim.EximSender.available()
    assert not ok and str(tmp_path / "mine" / "exim") in why and "setup-senders" in why
    if mailauth.node_binary() is not None:
        ok, why = mailauth.MailauthSender.available()
        assert not ok and str(tmp_path / "mine" / "node") in why and "setup-senders" in why


def test_the_packaged_driver_and_script_are_the_checkouts() -> None:
    assert datadir.SCRIPT.read_bytes() == (ROOT / "scripts" / "install-real-senders.sh").read_bytes()
    for name in ("package.json", "package-lock.json", "mailauth-send.mjs"):
        assert (datadir.NODE_SOURCE / name).is_file(), name
