"""The closing summary of `make test`: the skipped tests in groups, one line each saying how to
enable the group (STYLE habit 13). tests/conftest.py feeds it the skip reasons of the run."""

from __future__ import annotations

import re
from collections.abc import Iterable

# (pattern in a skip reason, group, how to enable it). First match wins; the patterns match
# what the adapters' `available()` and the tests' skips say, whichever sender asked: Postfix
# missing skips postfix-mta-sts too, and belongs to the postfix group.
GROUPS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), group, how) for pattern, group, how in (
        (r"install Debian's postfix|reinstall Debian's postfix", "postfix",
         "make real-setup (as root: installs Debian's postfix)"),
        (r"mta-sts-daemon not found", "postfix-mta-sts",
         "pip install 'downgrade-lab[real]' (make real-setup does it too)"),
        (r"exim4? not found|Debian-exim user|unpack Debian's exim4", "exim",
         "make real-setup or downgrade-lab setup-senders (as root: unpacks Debian's exim4 into the data folder)"),
        (r"smtpd not found|unpacks Debian's opensmtpd", "opensmtpd",
         "make real-setup or downgrade-lab setup-senders (as root: unpacks Debian's opensmtpd into the data folder)"),
        (r"node not found|npm packages .* missing", "mailauth",
         "make real-setup or downgrade-lab setup-senders (npm packages into the data folder; needs nodejs and npm)"),
        (r"DOWNGRADE_LAB_COMMAND", "command",
         "export DOWNGRADE_LAB_COMMAND='...' (a command template: docs/senders.md)"),
        (r"--isolate needs", "isolate", "run as root, or as a user with user namespaces (apt-get install uidmap)"),
        (r"needs root to become nobody|unprivileged user cannot run|system Python cannot import",
         "as-nobody", "run the suite as root, with the system python3 able to import the lab"),
        (r"chromium", "chromium", "apt-get install chromium"),
        (r"tshark", "tshark", "apt-get install tshark"),
        (r"could not import 'yaml'", "yaml", "pip install pyyaml"),
    ))


def group_of(reason: str) -> tuple[str, str]:
    """(group, how to enable it) for one skip reason; an unknown reason is its own group,
    shown as it is."""
    for pattern, group, how in GROUPS:
        if pattern.search(reason):
            return group, how
    return reason, ""


def summary_lines(reasons: Iterable[str]) -> list[str]:
    """One line per group, in GROUPS order and then unknown reasons: `group (N skipped): how`."""
    counts: dict[tuple[str, str], int] = {}
    for reason in reasons:
        key = group_of(reason)
        counts[key] = counts.get(key, 0) + 1
    order = {group: i for i, (_, group, _) in enumerate(GROUPS)}
    lines = []
    for (group, how), n in sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0])):
        lines.append(f"{group} ({n} skipped): {how}" if how else f"{n} skipped: {group}")
    return lines
