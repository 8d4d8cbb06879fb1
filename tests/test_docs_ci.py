"""docs/ci.md: the examples it shows are the files under docs/examples/ and they pass (the
Python test, and the sharded GitHub workflow: its commands run here, verbatim); the CI jobs it
shows parse and run commands the lab accepts."""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from downgrade_lab.frontends.cli import Environment, build_parser, main

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ci.md"
EXAMPLES = ROOT / "docs" / "examples"
FENCE = re.compile(r"<!-- (example|ci): (\S+) -->\n```\w+\n(.*?)```\n", re.S)


def blocks(kind: str) -> dict[str, str]:
    return {name: body for k, name, body in FENCE.findall(DOC.read_text()) if k == kind}


def test_the_doc_embeds_every_example_file_verbatim() -> None:
    shown = blocks("example")
    files = sorted(p.relative_to(ROOT).as_posix() for p in EXAMPLES.iterdir()
                   if p.suffix in (".py", ".yml"))
    assert sorted(shown) == files
    for name, body in shown.items():
        assert body == (ROOT / name).read_text(), f"docs/ci.md shows an old {name}"


def test_the_examples_pass() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([sys.executable, "-m", "pytest", "docs/examples", "-p", "no:xdist",
                           "-p", "no:cacheprovider", "-q"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    tests = sum(len(re.findall(r"^(?:async )?def test_", p.read_text(), re.M))
                for p in EXAMPLES.glob("test_*.py"))
    assert f"{tests} passed" in done.stdout


def _commands(yaml_text: str, program: str) -> list[str]:
    """The shell commands of a CI job that start with `program`."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(yaml_text)
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.strip().startswith(program):
            found.append(node)

    walk(doc)
    return found


def test_the_github_job_runs_a_pytest_command_the_plugin_accepts() -> None:
    (command,) = _commands(blocks("ci")["github"], "pytest ")
    argv = shlex.split(command)
    assert "--lab-scenarios" in argv
    # collect only: every option is real and the catalogue collects, one test per scenario
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([sys.executable, "-m", *argv, "--co", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    count = len(list((ROOT / "scenarios").rglob("*.toml")))
    assert f"{count} tests collected" in done.stdout


def test_the_gitlab_job_runs_a_command_line_the_cli_accepts() -> None:
    (command,) = _commands(blocks("ci")["gitlab"], "downgrade-lab ")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "run" and args.junit and args.json


def _lab(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(argv, Environment(stdout=out, stderr=err)), out.getvalue(), err.getvalue()


@pytest.mark.e2e
@pytest.mark.timeout(600)  # the whole catalogue once, over four shards: ~20 s on an idle machine
def test_the_sharded_workflow_runs_every_shard_and_joins_them(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shard job's command with its matrix value, in its own folder, as the runners do; the
    artefacts laid out as download-artifact does; then the merge job's command, glob and all."""
    yaml = pytest.importorskip("yaml")
    text = (EXAMPLES / "github-actions.yml").read_text()
    shards = yaml.safe_load(text)["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    (run_command,) = _commands(text, "downgrade-lab run ")
    (merge_command,) = _commands(text, "downgrade-lab merge ")
    assert f"--shard ${{{{ matrix.shard }}}}/{len(shards)}" in run_command
    assert shards == list(range(1, len(shards) + 1))
    for k in shards:
        job = tmp_path / f"job{k}"
        job.mkdir()
        monkeypatch.chdir(job)
        argv = shlex.split(run_command.replace("${{ matrix.shard }}", str(k)))
        code, _, err = _lab(argv[1:])
        assert code == 0, err[-2000:]  # the reference sender passes every scenario
        target = tmp_path / "merge" / "shards" / f"shard-{k}"
        target.mkdir(parents=True)
        (job / "out" / "shard.json").rename(target / "shard.json")
    monkeypatch.chdir(tmp_path / "merge")
    argv = [expanded for word in shlex.split(merge_command)
            for expanded in (sorted(glob.glob(word)) if "*" in word else [word])]
    assert len(argv) > len(shards)
    code, out, err = _lab(argv[1:])
    assert code == 0, err
    record = json.loads(Path("out/lab.json").read_text())
    catalogue = sorted(p.relative_to(ROOT / "scenarios").with_suffix("").as_posix()
                       for p in (ROOT / "scenarios").rglob("*.toml"))
    # merge refuses a cell twice: these are disjoint shards that cover the catalogue
    assert sorted(r["scenario"] for r in record["results"]) == catalogue
    assert record["summary"]["PASS"] == len(catalogue), record["summary"]
    assert Path("out/lab.xml").stat().st_size and Path("out/lab.html").stat().st_size
    assert out.splitlines()[1].startswith(catalogue[0])
