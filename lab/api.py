"""The public sender API (DESIGN §5, issue 14): everything a sender written outside the lab
needs, in one module. `import downgrade_lab.api as dgl`.

A sender is any class with `name`, `capabilities` and the three coroutines of `Sender`; the lab
builds one per scenario, calls `start(env)` once, `send(message, deadline)` once per step and
`stop()` at the end (also after a failure). Optional: `available() -> (bool, why)` as a static
or class method (shown by `downgrade-lab senders`), `summary` (one line for that listing),
`loopback = True` when the sender honours `LabEnv.ports` and may run without `--isolate`.

The helpers are the ones the lab's own real-MTA adapters use: a private work folder, the
environment of a sender process (the lab CA trusted, proxies removed), subprocesses whose
failure is one line, log tailing and waiting for a port.

Register a sender with an entry point in the group `downgrade_lab.senders`
(`name = "module:Class"`), or run it as `--sender module:Class`; docs/plugins.md has a complete
example. Changes to this module follow the run record's versioning rule: adding a name moves
the minor version of the lab, changing or removing one the major.
"""

from __future__ import annotations

from .errors import LabError, SenderError
from .senders.base import Message, Sender, SenderState, SendReport, remaining
from .senders.env import LabEnv
from .senders.real.base import (
    Done,
    LogTail,
    SenderTimeout,
    export_ca,
    free_port,
    kill_and_wait,
    lab_variables,
    make_workdir,
    one_line,
    real_root,
    require_isolated,
    run,
    sender_environ,
    wait_port,
)
from .senders.registry import ENTRY_POINT_GROUP

__all__ = [
    "ENTRY_POINT_GROUP",
    "Done",
    "LabEnv",
    "LabError",
    "LogTail",
    "Message",
    "SendReport",
    "Sender",
    "SenderError",
    "SenderState",
    "SenderTimeout",
    "export_ca",
    "free_port",
    "kill_and_wait",
    "lab_variables",
    "make_workdir",
    "one_line",
    "real_root",
    "remaining",
    "require_isolated",
    "run",
    "sender_environ",
    "wait_port",
]
