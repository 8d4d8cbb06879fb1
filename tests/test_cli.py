"""The command line, called in-process (`main(argv, env)`): exit codes and one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lab.cli import Environment, main

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, Environment(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("text", "key"), [
    ('title = "t"\n[[step]\n', "bad TOML"),
    ('title = "t"\nfoo = 1\n[[step]]\nexpect = "delivered"\n', "foo"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = ["teleport"]\n', "step[0].attack[0].kind"),
    ('title = "t"\n[[step]]\nexpect = "sometimes"\n', "step[0].expect"),
    ('title = "t"\n[receiver]\nstarttls = 1\n[[step]]\nexpect = "delivered"\n', "receiver.starttls"),
], ids=["bad-toml", "unknown-key", "unknown-attack", "unknown-outcome", "wrong-type"])
@pytest.mark.parametrize("command", ["run", "list"])
def test_malformed_scenario_is_one_line_exit_2(tmp_path: Path, text: str, key: str,
                                               command: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    code, out, err = run([command, str(bad)])
    assert code == 2
    assert err.count("\n") == 1, err
    assert str(bad) in err and key in err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize(("argv", "words"), [
    (["run", "scenarios", "--sender", "nosuch"], "unknown sender 'nosuch'"),
    (["run", "does/not/exist"], "no such file"),
    (["run", str(ROOT / "scenarios"), "-k", "zzz-no-match"], "no scenario matches"),
    (["run", str(ROOT / "scenarios"), "-k", "strip and"], "-k"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_usage_errors_exit_2(argv: list[str], words: str) -> None:
    code, _, err = run(argv)
    assert code == 2
    assert words in err and "Traceback" not in err


def test_list_shows_ids_titles_and_conformance_ids() -> None:
    code, out, _ = run(["list", str(ROOT / "scenarios")])
    assert code == 0
    assert "strip/no-policy" in out and "STARTTLS stripped" in out


def test_senders_lists_the_builtin_adapters() -> None:
    code, out, _ = run(["senders"])
    assert code == 0
    assert "opportunistic" in out and "reference" in out


@pytest.mark.parametrize("option", ["--json", "--junit", "--html"])
def test_an_output_that_cannot_be_written_is_refused_before_the_run(
        tmp_path: Path, option: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    healthy = str(ROOT / "scenarios" / "baseline" / "healthy.toml")
    for target, words in ((blocker / "out.json", "cannot write"), (tmp_path, "is a folder")):
        code, out, err = run(["run", healthy, option, str(target)])
        assert code == 2 and words in err and err.count("\n") == 1, err
        assert out == ""  # refused before any scenario ran


def test_output_folders_are_made(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "run.json"
    code, _, err = run(["run", str(ROOT / "scenarios" / "baseline" / "healthy.toml"),
                        "--sender", "reference", "--json", str(target)])
    assert code == 0, err
    assert target.read_text().startswith("{")
