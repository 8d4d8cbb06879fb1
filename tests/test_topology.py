"""The pure parts of the isolated topology and the real-sender adapters: address plans, log
parsing, generated configuration. No sockets, no namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from downgrade_lab.core.profile import fill, find_key, first_result, load
from downgrade_lab.harness.topology import ISOLATED, LOOPBACK, get
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.senders.real import postfix, postfixlog
from downgrade_lab.senders.real.base import LogTail, sender_environ
from downgrade_lab.senders.real.command import expand
from downgrade_lab.senders.registry import PROFILES

# -- topology ------------------------------------------------------------------------------------


def test_loopback_plan_puts_everything_on_127_0_0_1_ephemeral() -> None:
    plan = LOOPBACK.plan("example.test", ["mx1.example.test", "mx2.example.test"])
    assert {e.host for e in plan.mx.values()} == {"127.0.0.1"}
    assert {e.port for e in plan.mx.values()} == {0}
    assert (plan.dns.port, plan.policy.port) == (0, 0)
    assert set(plan.addresses.values()) == {"127.0.0.1"}


def test_isolated_plan_gives_each_host_its_own_address_and_real_port() -> None:
    plan = ISOLATED.plan("example.test", ["MX1.example.test.", "mx2.example.test"], "mx.attacker.test")
    assert (plan.dns.host, plan.dns.port) == ("127.0.0.53", 53)
    assert (plan.policy.host, plan.policy.port) == ("127.0.0.44", 443)
    assert plan.mx["mx1.example.test"].host == "127.0.1.1"
    assert plan.mx["mx2.example.test"].host == "127.0.1.2"
    assert plan.mx["mx.attacker.test"].host == "127.0.2.1"
    assert {e.port for e in plan.mx.values()} == {25}
    assert plan.addresses["mta-sts.example.test"] == "127.0.0.44"
    assert len(set(plan.addresses.values())) == len(plan.addresses)  # no two hosts share one


def test_unknown_topology_is_a_lab_error() -> None:
    with pytest.raises(Exception, match="unknown topology 'lan'"):
        get("lan")


# -- the environment a real sender gets ------------------------------------------------------------


def test_sender_environ_trusts_the_lab_ca_and_drops_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("SSL_CERT_DIR", "/etc/ssl/certs")
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    env = LabEnv(domain="example.test", dns_host="127.0.0.53", dns_port=53,
                 ca_file=Path("/lab/ca.pem"), host_addresses={"mx1.example.test": "127.0.1.1"},
                 ports={"mx1.example.test": 25}, topology="isolated")
    out = sender_environ(env)
    assert out["SSL_CERT_FILE"] == out["NODE_EXTRA_CA_CERTS"] == out["LAB_CA_FILE"] == "/lab/ca.pem"
    assert "SSL_CERT_DIR" not in out and "https_proxy" not in out
    assert out["LAB_DNS"] == "127.0.0.53" and out["LAB_HOSTS"] == "mx1.example.test=127.0.1.1:25"


def test_log_tail_returns_only_complete_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text("old\n")
    tail = LogTail(log)
    tail.skip()
    with log.open("a") as f:
        f.write("one\ntw")
    assert tail.read() == ["one"]
    with log.open("a") as f:
        f.write("o\n")
    assert tail.read() == ["two"]


# -- Postfix ------------------------------------------------------------------------------------------

MAILLOG = """\
Nov 24 17:04:25 sender postfix/pickup[191]: D8A6D214125: uid=0 from=<a@sender.test>
Nov 24 17:04:25 sender postfix/cleanup[214]: D8A6D214125: message-id=<abc@x>
Nov 24 17:04:25 sender postfix/smtp[217]: Verified TLS connection established to mx1.example.test[127.0.1.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Nov 24 17:04:25 sender postfix/smtp[217]: D8A6D214125: to=<bob@example.test>, relay=mx1.example.test[127.0.1.1]:25, delay=0.03, dsn=2.0.0, status=sent (250 2.0.0 OK queued as 1)
Nov 24 17:04:26 sender postfix/cleanup[214]: E1: message-id=<def@x>
Nov 24 17:04:26 sender postfix/smtp[218]: E1: to=<bob@example.test>, relay=mx1.example.test[127.0.1.1]:25, delay=0.03, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx1.example.test[127.0.1.1])
Nov 24 17:04:27 sender postfix/error[219]: E1: to=<bob@example.test>, relay=none, delay=1, dsn=4.7.4, status=deferred (delivery temporarily suspended: TLS is required)
""".splitlines()


@pytest.mark.parametrize(("message_id", "qid", "state", "reason", "tls"), [
    ("abc@x", "D8A6D214125", "delivered", "250 2.0.0 OK queued as 1", True),
    ("def@x", "E1", "deferred", "TLS is required, but was not offered by host mx1.example.test[127.0.1.1]", False),
])
def test_postfix_log_gives_postfix_s_own_verdict(message_id: str, qid: str, state: str, reason: str,
                                                 tls: bool) -> None:
    assert postfixlog.queue_id(MAILLOG, message_id) == qid
    first = postfixlog.statuses(MAILLOG, qid)[0]
    assert (first.state, first.reason, bool(first.tls)) == (state, reason, tls)
    assert first.relay == "mx1.example.test[127.0.1.1]:25"


def test_postfix_suspended_destination_is_stale_not_a_verdict() -> None:
    last = postfixlog.statuses(MAILLOG, "E1")[-1]
    assert last.stale and not postfixlog.statuses(MAILLOG, "E1")[0].stale
    assert postfixlog.queue_id(MAILLOG, "nobody@x") is None


def test_postfix_master_cf_turns_chroot_off_and_removes_smtpd() -> None:
    text = ("# comment\nsmtp      inet  n       -       y       -       -       smtpd\n"
            "smtp      unix  -       -       y       -       -       smtp\n"
            "        -o syslog_name=postfix/$service_name\n")
    out = postfix.master_cf(text).splitlines()
    assert out[1].startswith("#smtp      inet")
    assert out[2].split()[4] == "n" and out[3].startswith("        -o")


def test_postfix_queue_dirs_come_from_postfix_files() -> None:
    files = ("$queue_directory:d:root:-:755:uc\n$queue_directory/active:d:$mail_owner:-:700:ucr\n"
             "$queue_directory/maildrop:d:$mail_owner:$setgid_group:730:uc\n$sbindir/postfix:f:root:-:755\n")
    assert postfix.queue_dirs(files) == [("active", "$mail_owner", "-", 0o700),
                                         ("maildrop", "$mail_owner", "$setgid_group", 0o730)]


@pytest.mark.parametrize(("maps", "expected"), [
    (None, None),
    ("socketmap:inet:127.0.0.1:8461:postfix", "smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix"),
])
def test_postfix_main_cf(maps: str | None, expected: str | None) -> None:
    text = postfix.main_cf(Path("/x"), Path("/x/ca.pem"), maps)
    assert "smtp_tls_security_level = may" in text and "smtp_tls_CAfile = /x/ca.pem" in text
    assert "smtp_connection_cache_on_demand = no" in text
    assert (expected in text) if expected else ("smtp_tls_policy_maps" not in text)


# -- Exim ---------------------------------------------------------------------------------------------

EXIM_LOG = """\
2026-11-24 17:31:56 1xVuJo-00000A-0X <= alice@sender.test U=root P=local S=556 id=1@sender.test for bob@example.test
2026-11-24 17:31:56 1xVuJo-00000A-0X => bob@example.test R=dnslookup T=remote_smtp H=mx1.example.test [127.0.1.1] X=TLS1.3:AES_256_GCM:256 CV=yes C="250 OK"
2026-11-24 17:31:57 1xVuJp-00000B-0Y <= alice@sender.test U=root P=local S=556 id=2@sender.test for bob@example.test
2026-11-24 17:31:57 1xVuJp-00000B-0Y == bob@example.test R=dnslookup T=remote_smtp defer (-44) H=mx1.example.test [127.0.1.1]: SMTP error from remote mail server after RCPT: 451 try later
""".splitlines()


EXIM = load((PROFILES / "exim.toml").read_text(), "exim.toml")  # the exim profile (issue 14)


@pytest.mark.parametrize(("lines", "message_id", "state", "reason"), [
    (EXIM_LOG[:2], "1@sender.test", "delivered", "X=TLS1.3:AES_256_GCM:256 CV=yes"),
    (EXIM_LOG, "2@sender.test", "deferred", "451 try later"),
    (EXIM_LOG[:1], "1@sender.test", None, None),  # received, no result yet
    (EXIM_LOG[2:3], "1@sender.test", None, None),  # another message's reception
])
def test_exim_mainlog_verdict(lines: list[str], message_id: str, state: str | None,
                              reason: str | None) -> None:
    values = {"message_id": message_id, "sender": "alice@sender.test", "queue_id": "",
              "recipient": "bob@example.test", "message_file": ""}
    key = find_key(EXIM.outcome, lines, values)
    got = first_result(EXIM.outcome, lines, {**values, "id": key}) if key else None
    assert (got.state if got else None) == state
    if reason is not None and got is not None:
        assert reason in got.reason and got.reason.startswith("bob@example.test R=dnslookup")


def test_exim_config_routes_by_mx_and_verifies_against_the_lab_ca() -> None:
    text = fill(EXIM.files[0].text, {"exim": "/e/exim4", "helo": "sender.test", "workdir": "/w",
                                     "ca_file": "/w/lab-ca.pem"})
    assert "tls_verify_certificates = /w/lab-ca.pem" in text and "driver = dnslookup" in text
    assert "exim_path = /e/exim4" in text
    assert "hosts_require_tls" not in text  # Exim's default: opportunistic


# -- command ---------------------------------------------------------------------------------------


def test_command_template_placeholders_fill_every_word() -> None:
    words = ["send", "--from={sender}", "{recipient}", "<{message_file}>", "{keep}"]
    values = {"sender": "a@s", "recipient": "b@d", "message_file": "/m", "domain": "d"}
    assert expand(words, values) == ["send", "--from=a@s", "b@d", "</m>", "{keep}"]
