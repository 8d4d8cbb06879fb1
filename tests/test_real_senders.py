"""Real MTAs under test, each run through `downgrade-lab run --isolate` (issue 4).

Every test runs the CLI in a subprocess with its own TMPDIR below pytest's tmp_path, so the
isolated run's folder, the Postfix instance and everything else it writes are private to the
test (pytest -n 2 runs two of these side by side, each in namespaces of its own). Skipped only
when this machine cannot make namespaces or the sender is not installed; on CI (CI set), where
.ci/run installs everything, a missing sender fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from downgrade_lab.senders.registry import resolve
from tests.events import wait_until
from tests.isolation import isolation_problem as _isolation_problem
from tests.isolation import leftovers, need_isolation

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
RUN_TIMEOUT_S = 50


def need(sender: str) -> None:
    """Skip (or on CI fail) unless `sender` can run here in an isolated namespace."""
    need_isolation()
    ok, why = resolve(sender).available()
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{sender} should be installed on CI (scripts/install-real-senders.sh): {why}")
        pytest.skip(f"{sender}: {why}")


def isolated_run(tmp_path: Path, tmp: Path, sender: str, *scenarios: str,
                 extra_env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """`downgrade-lab run --isolate` on `scenarios` (ids below scenarios/) with TMPDIR `tmp`;
    (exit, record, stderr)."""
    out = tmp_path / f"record-{len(list(tmp_path.glob('record-*')))}.json"
    env = {**os.environ, "TMPDIR": str(tmp), "NO_COLOR": "1", **(extra_env or {})}
    cmd = [sys.executable, "-m", "downgrade_lab", "run", "--isolate", "--sender", sender, "--json", str(out),
           *(str(SCENARIOS / f"{s}.toml") for s in scenarios)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(out.read_text()), done.stderr


def result(record: dict[str, Any], scenario: str) -> dict[str, Any]:
    # ids are relative to the folder holding every scenario given: the stem when they share
    # one folder, `folder/stem` when they come from several
    stem = scenario.rpartition("/")[2]
    return next(r for r in record["results"] if r["scenario"] in (scenario, stem))


# -- the "done when" behaviours ---------------------------------------------------------

def test_postfix_delivers_in_plaintext_under_strip_starttls(tmp_path: Path, run_tmp: Path) -> None:
    need("postfix")
    code, record, _ = isolated_run(tmp_path, run_tmp, "postfix", "strip/starttls-enforce-warm",
                                   "strip/starttls-testing", "baseline/healthy")
    assert code == 1  # the enforce row FAILs: Postfix at `may` has no MTA-STS
    warm = result(record, "strip/starttls-enforce-warm")
    assert warm["verdict"] == "FAIL"
    assert [s["outcome"] for s in warm["steps"]] == ["delivered-tls", "delivered-plaintext"]
    assert warm["steps"][1]["sender_report"]["state"] == "delivered"
    assert "no TLS" in warm["steps"][1]["sender_report"]["detail"]
    assert result(record, "strip/starttls-testing")["verdict"] == "PASS"
    healthy = result(record, "baseline/healthy")["steps"][0]
    assert healthy["outcome"] == "delivered-tls"
    assert "Trusted TLS" in healthy["sender_report"]["detail"]  # `may` verifies nothing by name


def test_postfix_mta_sts_defers_warm_strip_enforce_with_postfix_reason(tmp_path: Path, run_tmp: Path) -> None:
    need("postfix-mta-sts")
    code, record, _ = isolated_run(tmp_path, run_tmp, "postfix-mta-sts", "strip/starttls-enforce-warm",
                                   "strip/starttls-testing")
    assert code == 0, record["summary"]
    warm = result(record, "strip/starttls-enforce-warm")
    assert warm["verdict"] == "PASS"
    first, attacked = warm["steps"]
    assert "Verified TLS" in first["sender_report"]["detail"]  # the resolver said `secure`
    assert attacked["outcome"] == "not-delivered"
    report = attacked["sender_report"]
    assert report["state"] == "deferred"
    assert "TLS is required, but was not offered" in report["detail"]  # Postfix's own words
    assert report["postqueue"]["queue_name"] == "deferred"
    assert any("TLS is required" in r for r in report["postqueue"]["delay_reason"])
    testing = result(record, "strip/starttls-testing")
    assert testing["verdict"] == "PASS"
    assert testing["steps"][-1]["outcome"] == "delivered-plaintext"


def test_postfix_mta_sts_strict_treats_testing_as_enforce(tmp_path: Path, run_tmp: Path) -> None:
    # The failure beside the success above: strict_testing refuses what testing allows.
    need("postfix-mta-sts-strict")
    _, record, _ = isolated_run(tmp_path, run_tmp, "postfix-mta-sts-strict", "strip/starttls-testing")
    steps = result(record, "strip/starttls-testing")["steps"]
    assert steps[-1]["outcome"] == "not-delivered"
    assert steps[-1]["sender_report"]["state"] == "deferred"


def test_exim_behaves_like_postfix(tmp_path: Path, run_tmp: Path) -> None:
    need("exim")
    code, record, _ = isolated_run(tmp_path, run_tmp, "exim", "strip/starttls-enforce-warm",
                                   "strip/starttls-testing", "baseline/healthy",
                                   "receiver/wrong-name-cert-no-policy")
    assert code == 1
    warm = result(record, "strip/starttls-enforce-warm")
    assert warm["verdict"] == "FAIL"
    assert warm["steps"][1]["outcome"] == "delivered-plaintext"
    assert warm["steps"][1]["sender_report"]["state"] == "delivered"
    assert result(record, "strip/starttls-testing")["verdict"] == "PASS"
    assert "CV=yes" in result(record, "baseline/healthy")["steps"][0]["sender_report"]["detail"]
    # a certificate for the wrong name: verified and found wanting, delivered all the same
    wrong = result(record, "receiver/wrong-name-cert-no-policy")["steps"][0]
    assert "CV=no" in wrong["sender_report"]["detail"]
    assert wrong["outcome"] == "delivered-tls"


def test_opensmtpd_profile_reads_its_verdicts_from_the_log(tmp_path: Path, run_tmp: Path) -> None:
    # A column from a profile alone (lab/senders/profiles/opensmtpd.toml, issue 14).
    need("opensmtpd")
    code, record, _ = isolated_run(tmp_path, run_tmp, "opensmtpd", "strip/starttls-enforce-warm",
                                   "strip/starttls-testing", "baseline/healthy",
                                   "inject/response-no-policy")
    assert code == 1
    warm = result(record, "strip/starttls-enforce-warm")
    assert warm["verdict"] == "FAIL"  # opportunistic STARTTLS, no MTA-STS
    assert [s["outcome"] for s in warm["steps"]] == ["delivered-tls", "delivered-plaintext"]
    assert warm["steps"][1]["sender_report"]["state"] == "delivered"
    assert result(record, "strip/starttls-testing")["verdict"] == "PASS"
    healthy = result(record, "baseline/healthy")["steps"][0]["sender_report"]
    assert healthy["state"] == "delivered" and healthy["detail"].startswith("250 ")
    assert any("mta delivery evpid=" in line for line in healthy["log"])  # its log, keyed by queue id
    assert 'server-cert-check result="success"' in healthy["detail"]  # against the lab CA
    # OpenSMTPD 6.8.0p2 dies when plaintext follows 220 Ready to start TLS: its failure, told
    # at once from its exit (no wait for the deadline), not a lab ERROR
    inject = result(record, "inject/response-no-policy")
    assert inject["verdict"] == "WEAK", inject["reason"]
    report = inject["steps"][0]["sender_report"]
    # (smtpd either dies first, or logs the broken session first: both are its own words)
    assert report["state"] == "deferred"
    assert any(words in report["detail"] for words in ("smtpd exited with status",
                                                       "Network error on destination MXs")), report
    # the verdicts come from the log a fraction of a second after the hand-over (0.1-0.3 s on
    # an idle machine), never after waiting for the step's 10 s deadline
    times = [s["sender_report"]["verdict_s"] for r in record["results"] for s in r["steps"]]
    assert max(times) < 2.0, times


def test_a_profile_whose_mta_will_not_start_says_why(tmp_path: Path, run_tmp: Path) -> None:
    # The failure beside the success above: a broken configuration is the pair's ERROR, in one
    # line naming the profile file, the key and the MTA's own words.
    need("opensmtpd")
    profile = (ROOT / "lab" / "senders" / "profiles" / "opensmtpd.toml").read_text()
    broken = run_tmp / "broken-opensmtpd.toml"
    broken.write_text(profile.replace('name = "opensmtpd"', 'name = "broken"')
                      .replace("listen on 127.0.0.1", "listen at 127.0.0.1"))
    _, record, _ = isolated_run(tmp_path, run_tmp, str(broken), "baseline/healthy")
    cell = result(record, "baseline/healthy")
    assert cell["sender"] == "broken" and cell["verdict"] == "ERROR"
    assert "broken-opensmtpd.toml: prepare.run[4]:" in cell["reason"]
    assert "syntax error" in cell["reason"]


@pytest.mark.parametrize(("sender", "verified"), [("postfix-dane", "Verified TLS"),
                                                  ("exim-dane", "CV=dane")])
def test_dane_senders_refuse_a_stripped_dane_mx(tmp_path: Path, run_tmp: Path, sender: str,
                                               verified: str) -> None:
    """Issue 16: through unbound and the lab's anchor, a secure TLSA record makes TLS
    mandatory; its no-DNSSEC twin (the last step) is delivered in plaintext as by any MTA."""
    need(sender)
    code, record, _ = isolated_run(tmp_path, run_tmp, sender, "dane/ee-strip", "dane/forge-tlsa")
    strip = result(record, "dane/ee-strip")
    assert strip["verdict"] == "PASS", strip["reason"]
    assert [s["outcome"] for s in strip["steps"]] == ["delivered-tls", "not-delivered",
                                                     "delivered-plaintext"]
    assert verified in strip["steps"][0]["sender_report"]["detail"]  # DANE-authenticated
    assert strip["steps"][1]["sender_report"]["state"] == "deferred"
    forged = result(record, "dane/forge-tlsa")  # the attacker's TLSA does not validate
    assert forged["steps"][1]["outcome"] == "not-delivered", forged["reason"]


def test_mailauth_runs_and_enforces(tmp_path: Path, run_tmp: Path) -> None:
    need("mailauth")
    code, record, _ = isolated_run(tmp_path, run_tmp, "mailauth", "baseline/enforce-healthy",
                                   "strip/starttls-enforce-warm", "strip/starttls-testing")
    healthy = result(record, "baseline/enforce-healthy")["steps"][0]
    assert healthy["outcome"] == "delivered-tls"
    assert healthy["sender_report"]["policy"]["mode"] == "enforce"
    warm = result(record, "strip/starttls-enforce-warm")
    assert warm["verdict"] == "PASS", warm["reason"]
    assert warm["steps"][1]["sender_report"]["state"] == "deferred"
    assert result(record, "strip/starttls-testing")["steps"][-1]["outcome"] == "delivered-plaintext"


def test_command_sender_runs_any_program(tmp_path: Path, run_tmp: Path) -> None:
    problem = _isolation_problem()
    if problem:
        pytest.skip(problem)
    # A tiny SMTP client as "any program": it reads the lab's hosts from LAB_HOSTS.
    script = tmp_path / "send.py"
    script.write_text(
        "import os, smtplib, ssl, sys\n"
        "sender, rcpt, path = sys.argv[1:4]\n"
        "hosts = dict(h.split('=') for h in os.environ['LAB_HOSTS'].split(','))\n"
        "ip, port = hosts['mx1.example.test'].split(':')\n"
        "with smtplib.SMTP(ip, int(port), local_hostname='sender.test', timeout=5) as s:\n"
        "    ctx = ssl.create_default_context()\n"
        "    ctx.check_hostname = False\n"
        "    s.starttls(context=ctx)\n"
        "    s.sendmail(sender, [rcpt], open(path, 'rb').read())\n")
    template = f"{sys.executable} {script} {{sender}} {{recipient}} {{message_file}}"
    _, record, _ = isolated_run(tmp_path, run_tmp, "command", "baseline/healthy", "receiver/no-starttls-no-policy",
                                extra_env={"DOWNGRADE_LAB_COMMAND": template})
    assert result(record, "baseline/healthy")["steps"][0]["outcome"] == "delivered-tls"
    refused = result(record, "receiver/no-starttls-no-policy")["steps"][0]
    assert refused["outcome"] == "not-delivered"  # this program insists on STARTTLS
    assert refused["sender_report"]["state"] == "deferred"
    assert "STARTTLS extension not supported" in refused["sender_report"]["detail"]


# -- isolation: identical reruns, nothing left behind, usage errors -----------------------------

def test_reruns_agree_and_leave_nothing_behind(tmp_path: Path, run_tmp: Path) -> None:
    need("postfix-mta-sts")
    picks = ("strip/starttls-enforce-warm", "dns/txt-dropped-cached", "mx/not-listed",
             "fetch/status-404", "intercept/self-signed-enforce-warm")
    runs = [isolated_run(tmp_path, run_tmp, "postfix-mta-sts", *picks)[1] for _ in range(2)]
    verdicts = [[(r["scenario"], r["verdict"], [s["outcome"] for s in r["steps"]])
                 for r in record["results"]] for record in runs]
    assert verdicts[0] == verdicts[1]
    assert leftovers(run_tmp) == []


def test_ctrl_c_stops_the_run_and_cleans_up(tmp_path: Path, run_tmp: Path) -> None:
    need("postfix-mta-sts")
    tmp = run_tmp
    env = {**os.environ, "TMPDIR": str(tmp), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "downgrade_lab", "run", "--isolate", "--sender",
                             "postfix-mta-sts", str(SCENARIOS / "strip")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # interrupt while a Postfix instance and its resolver daemon are running
    wait_until(lambda: any(tmp.rglob("dgl-pfm-*")), 20, "a Postfix instance folder")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert leftovers(run_tmp) == []


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "missing"])
def test_real_sender_without_isolate_is_one_line_exit_2(
        installed: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from downgrade_lab.frontends.cli import main
    from downgrade_lab.senders.real.postfix import PostfixSender

    # The same on every machine, whether Postfix is installed here or not (a fresh one has none)
    why = "" if installed else "postfix not found: install Debian's postfix (make real-setup)"
    monkeypatch.setattr(PostfixSender, "available", classmethod(lambda cls: (installed, why)))
    assert main(["run", str(SCENARIOS / "baseline" / "healthy.toml"), "--sender", "postfix"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("downgrade-lab: sender 'postfix' ")
    if installed:
        assert "--isolate" in err
    else:  # either problem may come first; the line names one of them
        assert "--isolate" in err or "postfix not found" in err


def test_isolate_without_root_or_user_namespaces_is_one_line_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import downgrade_lab.harness.isolate
    from downgrade_lab.frontends.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the module isolate reads it from
    monkeypatch.setattr(downgrade_lab.harness.isolate, "_rootless_missing",
                        lambda: "newuidmap/newgidmap (install the `uidmap` package)")
    assert main(["run", str(SCENARIOS / "baseline" / "healthy.toml"), "--isolate"]) == 2
    err = capsys.readouterr().err
    assert err == ("downgrade-lab: --isolate needs root, or user namespaces with newuidmap/newgidmap "
                   "(install the `uidmap` package)\n")


def test_isolate_as_nobody_says_what_is_missing(tmp_path: Path) -> None:
    # A real unprivileged user (no subordinate ids): the check itself, under the system Python
    # (the project venv lives below /root, out of nobody's reach).
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root to become nobody")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from downgrade_lab.harness.isolate import unshare_command, "
            "IsolationError\ntry:\n unshare_command()\nexcept IsolationError as e:\n print(e)\n sys.exit(2)")
    done = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "/usr/bin/python3", "-c", code, str(ROOT)], capture_output=True, text=True,
                          cwd="/", timeout=20, check=False)
    if "No module named" in done.stderr:
        pytest.skip(f"the system Python cannot import lab: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("--isolate needs root")
    assert done.stdout.count("\n") == 1


def test_builtin_senders_work_isolated(tmp_path: Path, run_tmp: Path) -> None:
    problem = _isolation_problem()
    if problem:
        pytest.skip(problem)
    _, record, _ = isolated_run(tmp_path, run_tmp, "reference", "strip/starttls-enforce-warm",
                                "baseline/healthy", "spoof/mx-enforce-warm")
    assert record["summary"]["FAIL"] == 0 and record["summary"]["ERROR"] == 0, record["summary"]
    # the TLS report names the MX's own isolated address, not loopback's 127.0.0.1
    stripped = result(record, "strip/starttls-enforce-warm")["steps"][1]
    details = [d for r in stripped["tlsrpt_reports"] for pol in r["report"]["policies"]
               for d in pol.get("failure-details", [])]
    assert details and {d["receiving-ip"] for d in details} == {"127.0.1.1"}
