"""The closing summary of skipped tests (tests/skips.py): each skip reason the suite gives falls
into a group with a one-line way to enable it; a reason nobody foresaw is still shown."""

from __future__ import annotations

import pytest

from tests.skips import group_of, summary_lines


@pytest.mark.parametrize(("reason", "group"), [
    ("postfix: postfix, postconf, postsuper, postqueue, sendmail not found: install Debian's postfix "
     "(make real-setup)", "postfix"),
    ("postfix-mta-sts: postfix, postconf, postsuper, postqueue, sendmail not found: install Debian's "
     "postfix (make real-setup)", "postfix"),  # Postfix missing skips its MTA-STS variants too
    ("postfix: /etc/postfix/master.cf missing: reinstall Debian's postfix", "postfix"),
    ("postfix-mta-sts: mta-sts-daemon not found: pip install 'downgrade-lab[real]' (make real-setup)",
     "postfix-mta-sts"),
    ("exim: /d/exim/usr/sbin/exim4 not found (make real-setup unpacks Debian's exim4 and creates it)", "exim"),
    ("opensmtpd: /d/opensmtpd/usr/sbin/smtpd not found (make real-setup unpacks Debian's opensmtpd and creates them)", "opensmtpd"),
    ("exim: the Debian-exim user is missing (make real-setup creates it)", "exim"),
    ("mailauth: npm packages mx-connect, mailauth, nodemailer missing in lab/senders/real/node: "
     "make real-setup (npm install --prefix lab/senders/real/node)", "mailauth"),
    ("mailauth: node not found: install Node.js (apt-get install nodejs npm)", "mailauth"),
    ("--isolate needs root, or user namespaces with newuidmap/newgidmap (install the `uidmap` package)",
     "isolate"),
    ("needs root to become nobody", "as-nobody"),
    ("chromium is not installed (.ci/run installs Debian's chromium)", "chromium"),
    ("tshark is not installed (.ci/run installs it)", "tshark"),
    ("could not import 'yaml': No module named 'yaml'", "yaml"),
], ids=["postfix", "postfix-for-mta-sts", "postfix-broken", "resolver", "exim", "opensmtpd", "exim-user",
        "npm", "node", "isolate", "nobody", "chromium", "tshark", "yaml"])
def test_each_skip_reason_falls_into_its_group(reason: str, group: str) -> None:
    found, how = group_of(reason)
    assert found == group and how and "\n" not in how


def test_an_unforeseen_reason_is_its_own_line() -> None:
    assert group_of("the moon is full") == ("the moon is full", "")
    assert summary_lines(["the moon is full"] * 2) == ["2 skipped: the moon is full"]


def test_the_summary_has_one_line_per_group_in_a_stable_order() -> None:
    reasons = ["could not import 'yaml': No module named 'yaml'",
               "postfix-mta-sts: mta-sts-daemon not found: pip install 'downgrade-lab[real]'",
               "tshark is not installed", "the moon is full",
               "postfix: postconf not found: install Debian's postfix (make real-setup)",
               "postfix-mta-sts-strict: mta-sts-daemon not found: pip install 'downgrade-lab[real]'"]
    lines = summary_lines(reasons)
    assert [line.split(" (")[0] for line in lines[:-1]] == ["postfix", "postfix-mta-sts", "tshark", "yaml"]
    assert lines[1] == ("postfix-mta-sts (2 skipped): pip install 'downgrade-lab[real]' "
                        "(make real-setup does it too)")
    assert lines[-1] == "1 skipped: the moon is full"
