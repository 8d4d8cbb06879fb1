"""The pytest plugin (DESIGN §8): scenario items run in a child pytest, as a CI suite runs them.

Each child is a real `python -m pytest` with the plugin loaded through its entry point; the
catalogue-wide run uses pytest-xdist in the child, since five scenarios wait out deliberate
timeouts (about 12 s of the 20 s a serial run takes).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from downgrade_lab.core.scenario import discover
from downgrade_lab.frontends.cli import Environment, main

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def child_pytest(*args: str, cwd: Path = ROOT, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    # CI=1: pytest prints the short summary's reasons untrimmed, as on a CI runner.
    env = {**os.environ, "CI": "1", "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def junit_cases(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return list(root.iter("testcase"))


def junit_counts(path: Path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    return {k: int(suite.attrib[k]) for k in ("tests", "failures", "errors", "skipped")}


def props(case: ET.Element) -> dict[str, str]:
    return {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")}


@pytest.mark.timeout(150)  # ~10 s alone; a loaded CI machine (the suite runs beside it) is slower
def test_the_whole_catalogue_passes_for_the_reference_sender(tmp_path: Path) -> None:
    junit = tmp_path / "lab.xml"
    done = child_pytest("--lab-scenarios", "scenarios", "--lab-sender", "reference", "-n", "4",
                        "-q", f"--junitxml={junit}", timeout=140)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ids = {s.id for s in discover([SCENARIOS])}
    cases = junit_cases(junit)
    # one test per scenario, named by scenario id and sender, and none of tests/ besides
    assert sorted(c.attrib["name"] for c in cases) == sorted(f"{sid}[reference]" for sid in ids)
    assert junit_counts(junit) == {"tests": len(ids), "failures": 0, "errors": 0, "skipped": 0}
    assert {props(c)["verdict"] for c in cases} == {"PASS"}


def test_opportunistic_failures_carry_the_one_line_reasons(tmp_path: Path) -> None:
    junit, record_file = tmp_path / "lab.xml", tmp_path / "lab.json"
    done = child_pytest("--lab-scenarios", "scenarios", "--lab-sender", "opportunistic",
                        "-k", "strip and not dane or cache/unexpired", "-p", "no:xdist", "-rfs",
                        f"--junitxml={junit}", f"--lab-json={record_file}")
    assert done.returncode == 1, done.stdout[-3000:]
    record: dict[str, Any] = json.loads(record_file.read_text())
    failed = [r for r in record["results"] if r["verdict"] == "FAIL"]
    assert failed and record["summary"]["SKIP"] == 1
    for r in failed:  # the short summary line: id, then the verdict and the one-line reason
        assert f"FAILED scenarios::{r['scenario']}[opportunistic] - FAIL: {r['reason']}" in done.stdout
    assert "Traceback" not in done.stdout and "lab/harness/runner.py" not in done.stdout
    # the failure text: the reason, then the step table with the attacker's change
    assert "step  attack" in done.stdout and "strip-starttls: deleted '250-STARTTLS'" in done.stdout

    counts = junit_counts(junit)
    assert counts == {"tests": len(record["results"]), "failures": record["summary"]["FAIL"],
                      "errors": 0, "skipped": record["summary"]["SKIP"]}
    # JUnit: classname from the path part of the id (folders dotted), name the rest
    by_name = {f"{c.attrib['classname']}::{c.attrib['name']}": c for c in junit_cases(junit)}
    for r in failed:
        case = by_name[f"scenarios::{r['scenario']}[opportunistic]"]
        failure = case.find("failure")
        assert failure is not None and failure.attrib["message"] == f"FAIL: {r['reason']}"
        assert props(case)["verdict"] == "FAIL" and props(case)["outcome"] == "delivered-plaintext"
    skipped = by_name["scenarios::cache/unexpired-policy[opportunistic]"].find("skipped")
    assert skipped is not None and "sender lacks clock" in skipped.attrib["message"]

    # the same selection through `downgrade-lab run` gives the same cells
    cli_file = tmp_path / "cli.json"
    main(["run", str(SCENARIOS), "--sender", "opportunistic", "-k", "strip and not dane or cache/unexpired",
          "--json", str(cli_file)], Environment(stdout=io.StringIO(), stderr=io.StringIO()))
    cli = json.loads(cli_file.read_text())
    assert record["summary"] == cli["summary"]
    assert [(r["scenario"], r["verdict"], r["reason"].split(" queued as ")[0]) for r in record["results"]] == \
        [(r["scenario"], r["verdict"], r["reason"].split(" queued as ")[0]) for r in cli["results"]]


WEAK = """\
title = "stripped on first contact, plaintext tolerated"
[policy]
mode = "enforce"
[[step]]
attack = ["strip-starttls"]
expect = "not-delivered"
tolerate = ["delivered-plaintext"]
because = "A-07: the first fetch may be asynchronous"
"""


def test_weak_passes_with_the_reason_attached(tmp_path: Path) -> None:
    (tmp_path / "weak.toml").write_text(WEAK)
    junit = tmp_path / "lab.xml"
    done = child_pytest("--lab-scenarios", str(tmp_path / "weak.toml"), "--lab-sender",
                        "opportunistic", "-p", "no:xdist", "-rA", f"--junitxml={junit}")
    assert done.returncode == 0, done.stdout[-2000:]
    (case,) = junit_cases(junit)
    assert props(case)["verdict"] == "WEAK" and "A-07" in props(case)["reason"]
    assert "WEAK: " in done.stdout  # the report section, shown by -rA


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--lab-sender", "nosuch"], 4, "--lab-sender: unknown sender 'nosuch'"),
    (["--lab-sender", "postfix"], 4, "real MTA"),
    (["--lab-scenarios", "no/such/folder"], 4, "--lab-scenarios no/such/folder: no such file"),
    (["--lab-scenarios", "no/such/folder", "-n", "2"], 4, "no such file or folder"),
], ids=["unknown-sender", "real-mta", "missing-path", "missing-path-xdist"])
def test_usage_errors_are_one_line(args: list[str], code: int, words: str) -> None:
    done = child_pytest("--lab-scenarios", "scenarios/strip", *args)
    assert done.returncode == code
    assert words in done.stderr and "Traceback" not in done.stderr


def test_a_bad_scenario_is_a_collection_error_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "t"\nfoo = 1\n[[step]]\nexpect = "delivered"\n')
    done = child_pytest("--lab-scenarios", str(bad), "-p", "no:xdist")
    assert done.returncode == 2
    assert f"bad scenario: {bad}: foo: unknown key" in done.stdout
    assert "Traceback" not in done.stdout


def test_without_the_option_the_plugin_collects_nothing_and_imports_no_lab(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    done = child_pytest("-p", "no:xdist", "--co", "-q", cwd=tmp_path)
    assert done.returncode == 0 and "test_one.py::test_one" in done.stdout
    assert "1 test collected" in done.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, downgrade_lab.frontends.pytest_plugin; print("
                            "sorted(m for m in ('downgrade_lab.harness.lab', 'downgrade_lab.harness.runner', 'aiohttp', 'aiosmtpd') "
                            "if m in sys.modules))"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"  # loading the plugin costs pytest nothing more


STRICT = '''
import pytest

from downgrade_lab.senders.builtin.opportunistic import OpportunisticSender

@pytest.mark.asyncio
async def test_lab_fixture_in_strict_mode(lab):
    sender = OpportunisticSender()
    await sender.start(lab.env)
    try:
        step = await lab.run_step(sender)
    finally:
        await sender.stop()
    assert step.outcome == "delivered-tls"
'''

LEFT_RUNNING = '''
async def test_left_running(make_lab):
    lab = make_lab()
    await lab.start()
'''


def test_fixtures_work_in_strict_mode_and_catch_a_lab_left_running(tmp_path: Path) -> None:
    (tmp_path / "test_strict.py").write_text(STRICT)
    done = child_pytest("-p", "no:xdist", "-o", "asyncio_mode=strict", "-o",
                        "asyncio_default_fixture_loop_scope=function", "-q", cwd=tmp_path)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-2000:]
    (tmp_path / "test_strict.py").unlink()
    (tmp_path / "test_left.py").write_text(LEFT_RUNNING)
    done = child_pytest("-p", "no:xdist", "-o", "asyncio_mode=auto", "-q",
                        "-W", "ignore::ResourceWarning", "-W", "ignore::pytest.PytestUnraisableExceptionWarning",
                        cwd=tmp_path)
    assert "make_lab: 1 lab(s) started but not stopped" in done.stdout, done.stdout[-2000:]


def test_lab_json_to_a_folder_is_a_usage_error_before_any_test(tmp_path: Path) -> None:
    done = child_pytest("-p", "no:xdist", "--lab-scenarios", "scenarios/baseline/healthy.toml",
                        "--lab-sender", "reference", f"--lab-json={tmp_path}", "-q")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "a folder, not a file" in done.stderr and "passed" not in done.stdout


def test_lab_json_that_cannot_be_written_keeps_the_summary(tmp_path: Path) -> None:
    done = child_pytest("-p", "no:xdist", "--lab-scenarios", "scenarios/baseline/healthy.toml",
                        "--lab-sender", "reference", "--lab-json=/dev/full", "-q")
    assert "1 passed" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert "cannot write --lab-json /dev/full" in done.stdout
    assert done.returncode == pytest.ExitCode.USAGE_ERROR


def test_scenarios_with_one_id_in_two_folders_are_both_collected() -> None:
    done = child_pytest("-p", "no:xdist", "--lab-scenarios", "scenarios/parse", "--lab-scenarios",
                        "scenarios/tlsrpt", "--lab-scenarios", "scenarios/parse/missing-version.toml",
                        "--lab-sender", "reference", "--collect-only", "-q")
    ids = [line for line in done.stdout.splitlines() if "missing-version[reference]" in line]
    assert len(ids) == 2, done.stdout[-2000:]  # parse's and tlsrpt's; the file named twice once
    assert any("parse" in i for i in ids) and any("tlsrpt" in i for i in ids)
