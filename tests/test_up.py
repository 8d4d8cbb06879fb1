"""`downgrade-lab up` (issue 4): a live lab around a command or a shell.

Every test drives the real CLI: real services, real SMTP and TLS from a small client script
(`CLIENT`) that delivers the way the banner tells a user to. The isolated tests run the same
client unmodified inside the lab's namespace, where it finds the MX through /etc/resolv.conf
and port 25, and then check that nothing of the lab is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from downgrade_lab.frontends import up
from downgrade_lab.frontends.cli import main
from tests.events import wait_for_process
from tests.isolation import leftovers, need_isolation

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
# Delivers one message to mx1.example.test: through LAB_HOSTS in the loopback topology, by
# name on port 25 when isolated; STARTTLS (verified against SSL_CERT_FILE) when offered.
CLIENT = """
import os, smtplib, ssl, sys
host, port = "mx1.example.test", 25
if os.environ["LAB_TOPOLOGY"] == "loopback":
    hosts = dict(h.split("=") for h in os.environ["LAB_HOSTS"].split(","))
    host, port = hosts["mx1.example.test"].rsplit(":", 1)
s = smtplib.SMTP(host, int(port), local_hostname="client.test", timeout=5)
s.ehlo()
if s.has_extn("starttls"):
    context = ssl.create_default_context()
    context.check_hostname = False  # by IP in the loopback topology; the SNI is still sent
    s.starttls(context=context)
    s.ehlo()
s.sendmail("alice@sender.test", ["bob@example.test"], b"Subject: up\\r\\n\\r\\nsecret body\\r\\n")
s.quit()
print("client: delivered")
"""


def _client(tmp_path: Path) -> str:
    path = tmp_path / "client.py"
    path.write_text(CLIENT)
    return str(path)


def _up(*args: str, tmp: Path | None = None, stdin: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    if tmp is not None:
        full_env["TMPDIR"] = str(tmp)
    return subprocess.run([sys.executable, "-m", "downgrade_lab", "up", *args], cwd=ROOT, env=full_env,
                          input=stdin if stdin is not None else "", capture_output=True,
                          text=True, timeout=timeout, check=False)


def _record(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


# -- loopback: no privileges ------------------------------------------------------------------

def test_honest_lab_takes_mail_over_tls_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "up.json"
    done = _up("--json", str(out), "--", sys.executable, _client(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "client: delivered" in done.stdout
    mx_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("MX"))
    record = _record(out)
    [stored] = record["received"]
    assert stored["tls"] and stored["tls_version"].startswith("TLSv1")
    assert "secret body" not in record["connections"][0]["attacker_read"]
    # the banner's MX address is the one the lab's environment gives the client
    env_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("env"))
    assert f"mx1.example.test={mx_line.split()[1]}" in env_line
    assert "over TLSv1" in done.stdout and "(TLS TLSv1" in done.stdout
    # judged like `run` judges a sender: the default step expects delivered-tls
    assert (record["expect"], record["outcome"], record["verdict"]) == (
        "delivered-tls", "delivered-tls", "PASS")
    assert "[lab] step 1 expects delivered-tls: PASS" in done.stdout


def test_strip_scenario_shows_the_downgrade(tmp_path: Path) -> None:
    out = tmp_path / "up.json"
    done = _up("--scenario", str(SCENARIOS / "strip" / "no-policy.toml"), "--json", str(out),
               "--", sys.executable, _client(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "attacker  strip-starttls" in done.stdout
    assert "STARTTLS deleted from the EHLO reply" in done.stdout
    assert "in PLAINTEXT" in done.stdout
    # the dialogue as both sides saw it: the receiver offered STARTTLS, the client never heard it
    struck = next(line for line in done.stdout.splitlines() if "250-STARTTLS" in line)
    assert struck.startswith("XX") and "DELETED BY THE ATTACKER" in struck
    assert any("secret body" not in line and "[message data:" in line
               for line in done.stdout.splitlines())
    record = _record(out)
    assert record["scenario"] == "no-policy" and record["exit"] == 0
    assert record["outcome"] == "delivered-plaintext" and record["verdict"] == "PASS"
    [stored] = record["received"]
    assert stored["tls"] is False
    assert "secret body" in record["connections"][0]["attacker_read"]


def test_step_option_sets_up_that_step(tmp_path: Path) -> None:
    # step 1 of strip/starttls-enforce-warm is honest (it warms the cache), step 2 strips
    scenario = str(SCENARIOS / "strip" / "starttls-enforce-warm.toml")
    first = _up("--scenario", scenario, "--", "true")
    second = _up("--scenario", scenario, "--step", "2", "--", "true")
    assert "attacker  none" in first.stdout
    assert "attacker  strip-starttls" in second.stdout
    assert "step 2 of 2" in second.stdout


def test_exit_status_of_the_command_is_the_labs(tmp_path: Path) -> None:
    done = _up("--", "sh", "-c", "exit 7")
    assert done.returncode == 7
    assert "[lab] stopped. The receiver stored 0 message(s)." in done.stdout


def test_without_a_command_runs_a_shell_with_the_lab_environment(tmp_path: Path) -> None:
    done = _up(stdin='echo "dns at $LAB_DNS:$LAB_DNS_PORT ca $SSL_CERT_FILE"; exit 4\n',
               env={"SHELL": "/bin/sh"})
    assert done.returncode == 4
    line = next(s for s in done.stdout.splitlines() if s.startswith("dns at "))
    ca = line.split(" ca ")[1]
    assert line.startswith("dns at 127.0.0.1:") and ca.endswith("lab-ca.pem")
    assert not Path(ca).exists()  # removed with the lab


def test_ctrl_c_reaches_the_command_and_stops_the_lab(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "up", "--", "sleep", "30"], cwd=ROOT,
                            env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_banner(proc, ["sleep", "30"])
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    # The command's own status: SIGINT reached `sleep` itself, so the stop came before any
    # escalation (without it the lab sends SIGTERM after up.STOP_GRACE_S: status 143). How long
    # the stop takes is a figure of bench/up.py, not a bound here.
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "[lab] stopped." in out


def test_sigterm_stops_a_command_that_ignores_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "up", "--", "sh", "-c",
                             "trap '' INT; sleep 30"], cwd=ROOT,
                            env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_banner(proc, ["sleep", "30"])  # the shell has set its trap and runs sleep
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "[lab] stopped." in out


def _wait_for_banner(proc: subprocess.Popen[str], command: list[str]) -> None:
    """Wait for the banner's last line, then for `command` to run below the lab (exec'd: its
    signal handling is in place)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Running "):
            wait_for_process(proc.pid, command)
            return
    raise AssertionError(f"no banner; stderr: {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize(("args", "message"), [
    (["--step", "3"], "--step 3: live has steps 1 to 1"),
    (["--scenario", "no/such.toml"], "--scenario no/such.toml: no such file"),
    (["--scenario", "scenarios"], "--scenario scenarios: a folder; give one scenario file"),
    (["--", "/no/such/program"], "cannot run '/no/such/program'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_scenario_file_is_one_line_and_exit_2(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "x"\n[[step]]\nexpect = "delivered-maybe"\n')
    assert main(["up", "--scenario", str(bad), "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("downgrade-lab: bad scenario:") and err.count("\n") == 1


# -- the pure parts ---------------------------------------------------------------------------

def test_summary_tells_offered_from_heard() -> None:
    reply = {"kind": "reply", "origin": "receiver", "connection": 0, "direction": "receiver->sender",
             "said": "250-mx1\r\n250-STARTTLS\r\n250 OK", "heard": "250-mx1\r\n250 OK"}
    observed = {"received": [], "policy_fetches": [], "dns_queries": [], "tlsrpt_reports": [],
                "connections": [{"mx": "mx1", "attacks": ["strip-starttls"], "saw_mail_from": True,
                                 "attacker_read_bytes": 10}],
                "transcript": [reply]}
    text = up.summary(observed)
    assert "STARTTLS deleted from the EHLO reply" in text and "incl. MAIL FROM" in text
    assert "DELETED BY THE ATTACKER" in text  # the dialogue, line by line
    honest = dict(reply, heard=reply["said"])
    text = up.summary({**observed, "transcript": [honest]}, dialogues=False)
    assert "deleted" not in text.lower() and "250-STARTTLS" not in text


# -- isolated: the real ports and resolver ----------------------------------------------------

def test_isolated_lab_serves_an_unmodified_client_and_leaves_nothing(tmp_path: Path,
                                                                     run_tmp: Path) -> None:
    need_isolation()
    out = tmp_path / "up.json"
    done = _up("--isolate", "--json", str(out), "--", sys.executable, _client(tmp_path),
               tmp=run_tmp)
    assert done.returncode == 0, done.stderr
    assert "DNS       127.0.0.53:53" in done.stdout and "(/etc/resolv.conf points here)" in done.stdout
    record = _record(out)
    [stored] = record["received"]
    assert stored["tls"] and stored["sni"] == "mx1.example.test"
    # the client's own resolver asked the lab DNS for the MX's address
    assert any(q["qname"].rstrip(".") == "mx1.example.test" for q in record["dns_queries"])
    assert leftovers(run_tmp) == []


def test_isolated_sigterm_stops_the_namespace_and_leaves_nothing(run_tmp: Path) -> None:
    need_isolation()
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "up", "--isolate", "--", "sleep", "30"],
                            cwd=ROOT, env={**os.environ, "NO_COLOR": "1", "TMPDIR": str(run_tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_banner(proc, ["sleep", "30"])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "[lab] stopped." in out
    assert leftovers(run_tmp) == []


# -- on a terminal: the command gets the foreground ---------------------------------------------

def _on_terminal(args: list[str], *keys: bytes, prompt: bool = False,
                 timeout: float = 20) -> tuple[int, str]:
    """Run `downgrade-lab up ARGS` on a fresh pseudo-terminal, as from an interactive shell,
    and type `keys` one at a time: without `prompt`, once the command (after `--` in ARGS)
    runs; with `prompt`, each key once the shell shows a new prompt (it owns the terminal and
    has dealt with the key before: the terminal flushes typed-ahead input on ^C, so nothing may
    be typed before the shell is back). Returns (exit status, what the terminal showed)."""
    import fcntl
    import termios

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "up", *args], cwd=ROOT,
                            env={**os.environ, "NO_COLOR": "1", "SHELL": "/bin/sh"},
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    command = args[args.index("--") + 1:] if "--" in args else []
    shown, pending, since = b"", list(keys), -1  # `since`: where to look for the next prompt
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every process holding the terminal has gone
            break
        if not chunk:
            break
        shown += chunk
        if since < 0 and b"Running " in shown:
            since = shown.index(b"Running ")
            if not prompt:
                wait_for_process(proc.pid, command)
        while pending and since >= 0 and (not prompt or re.search(rb"[#$] $", shown[since:])):
            os.write(master, pending.pop(0))
            since = len(shown)
            if prompt:
                break  # the next key waits for the next prompt
    os.close(master)
    return proc.wait(timeout=10), shown.decode("utf-8", "replace")


@pytest.mark.parametrize("isolate", [False, True], ids=["loopback", "isolated"])
def test_ctrl_c_on_the_terminal_stops_the_command_then_the_lab(isolate: bool) -> None:
    if isolate:
        need_isolation()
    code, shown = _on_terminal([*(["--isolate"] if isolate else []), "--", "sleep", "30"],
                               b"\x03")
    assert code == 128 + signal.SIGINT, shown
    assert "[lab] stopped." in shown


@pytest.mark.parametrize("isolate", [False, True], ids=["loopback", "isolated"])
def test_an_interactive_shell_reads_the_terminal_and_survives_ctrl_c(isolate: bool) -> None:
    if isolate:
        need_isolation()
    code, shown = _on_terminal(["--isolate"] if isolate else [],
                               b"\x03", b"echo lab-dns-$LAB_DNS_PORT\n", b"exit 5\n",
                               prompt=True)
    assert code == 5, shown
    assert re.search(r"lab-dns-\d+", shown), shown  # the shell expanded it: it read the line
    assert "[lab] stopped." in shown


def test_an_unwritable_json_path_is_refused_before_the_lab_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["up", "--json", str(blocker / "up.json"), "--", "true"]) == 2
    captured = capsys.readouterr()
    assert "cannot write" in captured.err and "Downgrade Lab is up" not in captured.out


def test_a_json_file_that_fails_to_write_is_one_line_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--json", "/dev/full", "--", "true"]) == 2
    captured = capsys.readouterr()
    assert "[lab] stopped." in captured.out  # the summary was shown first
    assert captured.err == "downgrade-lab: cannot write /dev/full: No space left on device\n"


def test_a_step_expecting_refusal_fails_a_client_that_delivers_in_plaintext(
        tmp_path: Path) -> None:
    out = tmp_path / "up.json"
    scenario = str(SCENARIOS / "strip" / "starttls-enforce-warm.toml")
    done = _up("--scenario", scenario, "--step", "2", "--json", str(out), "--",
               sys.executable, _client(tmp_path))
    assert done.returncode == 0  # the command's status; the verdict is in the summary
    record = _record(out)
    assert (record["outcome"], record["verdict"]) == ("delivered-plaintext", "FAIL")
    assert "expected not delivered" in record["reason"]
    assert "[lab] step 2 expects not-delivered: FAIL" in done.stdout


def test_html_tells_the_sessions_story(tmp_path: Path) -> None:
    page = tmp_path / "up.html"
    done = _up("--scenario", str(SCENARIOS / "strip" / "no-policy.toml"), "--html", str(page),
               "--", sys.executable, _client(tmp_path))
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "<svg" in html and "no-policy × up: " in html
    assert "deleted by strip-starttls" in html  # the struck 250-STARTTLS in the diagram
    assert "The attacker read the message" in html and "secret body" in html
    assert "<script" not in html  # self-contained and inert, as every report
