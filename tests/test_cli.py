"""The command line, called in-process (`main(argv, env)`): exit codes and one-line errors."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from downgrade_lab.frontends import cli
from downgrade_lab.frontends.cli import Environment, main
from tests.events import Lines, inet_sockets, wait_until

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


HEALTHY = str(ROOT / "scenarios" / "baseline" / "healthy.toml")


def test_a_sender_named_twice_runs_once() -> None:
    code, out, _ = run(["run", HEALTHY, "--sender", "reference", "--sender", "reference"])
    assert code == 0 and "1 PASS" in out


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_must_be_at_least_one(jobs: str) -> None:
    code, _, err = run(["run", HEALTHY, "-j", jobs])
    assert code == 2 and "-j takes a number of pairs from 1 up" in err


def test_traceback_is_accepted_after_the_subcommand() -> None:
    code, _, err = run(["run", HEALTHY, "--sender", "reference", "--traceback"])
    assert code == 0, err


def test_a_report_that_fails_to_write_loses_neither_the_matrix_nor_the_others(
        tmp_path: Path) -> None:
    junit = tmp_path / "run.xml"
    code, out, err = run(["run", HEALTHY, "--sender", "reference", "--json", "/dev/full",
                          "--junit", str(junit)])
    assert code == 2
    assert "healthy" in out and "1 PASS" in out  # the matrix was shown
    assert junit.read_text().startswith("<?xml")  # the other report was written
    assert err.splitlines()[-1] == "downgrade-lab: cannot write /dev/full: No space left on device"


@pytest.mark.parametrize("extra", [["--pcap", "FILE"], ["--pcap", ""], ["--json", "SCENARIO"]])
def test_bad_report_targets_are_refused_before_the_run(tmp_path: Path, extra: list[str]) -> None:
    scenario = tmp_path / "mine.toml"
    scenario.write_text((ROOT / "scenarios" / "baseline" / "healthy.toml").read_text())
    afile = tmp_path / "afile"
    afile.write_text("")
    extra = [str(afile) if e == "FILE" else str(scenario) if e == "SCENARIO" else e for e in extra]
    code, out, err = run(["run", str(scenario), *extra])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert scenario.read_text().startswith("title")  # never overwritten


def test_coverage_to_a_full_disk_is_one_line() -> None:
    code, _, err = run(["coverage", "-o", "/dev/full"])
    assert code == 2 and err.strip().endswith("cannot write /dev/full: No space left on device")


def test_list_shows_control_characters_escaped(tmp_path: Path) -> None:
    (tmp_path / "evil.toml").write_text('title = "red \\u001b[31m alert \\u0007"\n'
                                        '[[step]]\nexpect = "delivered"\n')
    code, out, _ = run(["list", str(tmp_path)])
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "red \\x1b[31m alert \\x07" in out


def _cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "downgrade_lab", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, check=False, **kw)


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    done = subprocess.run(f"{sys.executable} -m downgrade_lab list scenarios | head -1", shell=True,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.count("\n") == 1 and done.stderr == ""


def test_closed_stdout_and_stderr_are_survived(tmp_path: Path) -> None:
    record = tmp_path / "r.json"
    done = subprocess.run(f"{sys.executable} -m downgrade_lab run {HEALTHY} --sender reference "
                          f"--json {record} >&- 2>&-", shell=True, cwd=ROOT, timeout=60,
                          check=False)
    assert done.returncode == 0
    assert json.loads(record.read_text())["summary"]["PASS"] == 1


def _signal_mid_run(proc: subprocess.Popen[str], tmp: Path, signum: signal.Signals) -> str:
    """Send `signum` once the run is under way: its first pair has finished (the progress line
    on stderr), labs are running and the PKI's keys are on disk under `tmp`. Returns all of
    stderr, once the process has ended.

    (A signal that lands while the first lab starts: `test_sigterm_while_the_first_lab_starts`.)"""
    assert proc.stderr is not None
    err = Lines(proc.stderr)  # read as it comes: a full pipe would stall the run
    err.wait_for(lambda line: re.search(r"\(\d+/\d+\)$", line.rstrip()) is not None, 30,
                 "a progress line (PASS ... (1/N))")
    assert list(tmp.glob("**/downgrade-lab-*"))  # the PKI the signal must clean up (a worker's is
    # below the run's folder)
    proc.send_signal(signum)
    proc.wait(timeout=30)
    return err.rest(timeout=5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_a_run_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    """A cancelled CI job: labs stop and the PKI's private keys go, as after Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "run", str(ROOT / "scenarios"),
                             "-j", "2"], cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = _signal_mid_run(proc, tmp_path, signum)
    assert proc.returncode == 128 + signum, err
    assert f"stopped by {signum.name}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no key, no temp folder left


def test_sigterm_stops_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    """`downgrade-lab run ... &` in a script starts with SIGINT ignored; SIGTERM must still
    stop it cleanly (it cannot go through Ctrl-C handling there)."""
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "run", str(ROOT / "scenarios"),
                             "-j", "2"], cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    err = _signal_mid_run(proc, tmp_path, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_while_the_first_lab_starts(tmp_path: Path, sigint: str) -> None:
    """A SIGTERM that lands while the first labs start stops the run too. It used to be lost
    in up to 3 tries of 10 (raised from the signal handler at any bytecode, the interrupt was
    swallowed inside a TLS SNI callback or a finalizer): now the loop raises it between
    callbacks. Sent at several points of the start: the PKI made, then 1, 4, 8 sockets bound."""
    for sockets in (0, 1, 4, 8):
        tmp = tmp_path / str(sockets)
        tmp.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-m", "downgrade_lab", "run", str(ROOT / "scenarios" / "strip"),
             "--workers", "1", "-j", "2"], cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if sigint == "ignored" else None)

        def started(t: Path = tmp, n: int = sockets, pid: int = proc.pid) -> bool:
            return any(t.glob("downgrade-lab-*")) and len(inet_sockets(pid)) >= n

        wait_until(started, 30, f"the run's PKI and {sockets} sockets")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM, (sockets, err[-500:])
        assert "stopped by SIGTERM" in err and "Traceback" not in err
        assert list(tmp.iterdir()) == []


# The command's own process (launch.entry(), the console script's function, or cli.entry())
# trims its start and exit; a host that imports the lab and calls main() keeps its own trust
# store, modules and collector. launch.py keeps the collector off while the command imports.
@pytest.mark.parametrize("how", ["launch", "entry", "main"])
def test_only_the_commands_own_process_trims_its_start_and_exit(how: str) -> None:
    script = (
        "import gc, json, os, sys\n"
        "from downgrade_lab.frontends import cli, launch\n"
        f"argv = ['run', {str(HEALTHY)!r}, '--sender', 'reference']\n"
        "sys.argv = ['downgrade-lab', *argv]\n"
        "before = gc.get_stats()[0]['collections']\n"
        f"code = {{'launch': launch.entry, 'entry': cli.entry}}[{how!r}]() if {how!r} != 'main'"
        " else cli.main(argv)\n"
        "collections = gc.get_stats()[0]['collections'] - before\n"
        "import aiohttp.connector as c\n"
        "print(json.dumps({'code': code, 'aiodns': sys.modules.get('aiodns', 'absent') is None,"
        " 'trusted': len(c._SSL_CONTEXT_VERIFIED.get_ca_certs()) if hasattr(c,"
        " '_SSL_CONTEXT_VERIFIED') else None, 'threshold': gc.get_threshold()[0],"
        " 'frozen': gc.get_freeze_count() > 0, 'env': 'SSL_CERT_FILE' in os.environ,"
        " 'resolver': 'dns.resolver' in sys.modules, 'dkim': 'dkim' in sys.modules and"
        " sys.modules['dkim'].get_txt.__module__, 'enabled': gc.isenabled(),"
        " 'collections': collections}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, text=True, env=env,
                          capture_output=True, timeout=60, check=False)
    facts = json.loads(done.stdout.splitlines()[-1])
    assert facts["code"] == 0 and not facts["env"]  # the variables it set for aiohttp are gone
    own = how != "main"
    assert facts["enabled"]  # on again for the labs, or never turned off
    # no collection while the command imported (about 60 otherwise, for the same run)
    assert (facts["collections"] < 10) is (how == "launch"), facts["collections"]
    assert facts["aiodns"] is own  # blocked (None in sys.modules) only in the command's process
    assert facts["threshold"] == (cli.LAB_GC_THRESHOLD[0] if own else 700)
    assert facts["frozen"] is own  # the exit's collections skip what the run left
    # the run mailed its TLS report, so dkimpy was loaded; with dnspython's resolver only in a
    # host (the command's own process gives dkimpy its key table, never a DNS lookup)
    assert facts["dkim"] == ("dkim" if own else "dkim.dnsplug")
    assert facts["resolver"] is not own
    if facts["trusted"] is not None:  # aiohttp's default verified context: empty only there
        assert (facts["trusted"] == 0) is own


@pytest.mark.parametrize(("isolate", "topology", "shard", "jobs", "workers", "pairs", "where"), [
    (True, None, None, 4, 1, 10, "isolated-workers"),  # --isolate -j 4: namespaced workers
    (True, None, None, 1, 1, 10, "isolated"),  # --isolate -j 1: one inner run
    (True, None, None, 4, 1, 1, "isolated"),  # one pair needs no second namespace
    (False, "loopback", "0/2:x", 8, 2, 10, "share"),  # a worker's share, not more workers
    (False, "loopback", None, 8, 2, 10, "workers"),
    (False, "loopback", None, 8, 2, 1, "here"),  # one pair: no second process
    (False, "loopback", None, 8, 1, 10, "here"),  # --workers 1
    (False, "isolated", None, 8, 2, 10, "here"),  # inside a namespace: its pairs in turn
], ids=lambda v: str(v))
def test_where_a_run_runs_its_labs(isolate: bool, topology: str | None, shard: str | None,
                                   jobs: int, workers: int, pairs: int, where: str) -> None:
    from downgrade_lab.harness.topology import ISOLATED, LOOPBACK

    args = argparse.Namespace(isolate=isolate, worker_shard=shard)
    chosen = {None: None, "loopback": LOOPBACK, "isolated": ISOLATED}[topology]
    assert cli._run_where(args, chosen, jobs, workers, pairs) == where
