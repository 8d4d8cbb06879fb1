"""docs/ci.md: the Python examples it shows are the files under docs/examples/ and they pass;
the CI jobs it shows parse and run commands the lab accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from downgrade_lab.frontends.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ci.md"
EXAMPLES = ROOT / "docs" / "examples"
FENCE = re.compile(r"<!-- (example|ci): (\S+) -->\n```\w+\n(.*?)```\n", re.S)


def blocks(kind: str) -> dict[str, str]:
    return {name: body for k, name, body in FENCE.findall(DOC.read_text()) if k == kind}


def test_the_doc_embeds_every_example_file_verbatim() -> None:
    shown = blocks("example")
    files = sorted(p.relative_to(ROOT).as_posix() for p in EXAMPLES.glob("*.py"))
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


def _commands(yaml_text: str, program: str) -> list[list[str]]:
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
    return [shlex.split(c) for c in found]


def test_the_github_job_runs_a_pytest_command_the_plugin_accepts() -> None:
    (argv,) = _commands(blocks("ci")["github"], "pytest ")
    assert "--lab-scenarios" in argv
    # collect only: every option is real and the catalogue collects, one test per scenario
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([sys.executable, "-m", *argv, "--co", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    count = len(list((ROOT / "scenarios").rglob("*.toml")))
    assert f"{count} tests collected" in done.stdout


def test_the_gitlab_job_runs_a_command_line_the_cli_accepts() -> None:
    (argv,) = _commands(blocks("ci")["gitlab"], "downgrade-lab ")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.junit and args.json
