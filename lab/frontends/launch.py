"""The `downgrade-lab` command and `python -m downgrade_lab`: the CLI, with the cyclic garbage
collector off while the command imports what it needs. Imports make many objects and no
garbage, so every collection during them is wasted: about 60 of them, 20 ms of a one-scenario
run (docs/performance.md). The CLI turns the collector back on before any lab starts
(lab/frontends/cli.py, `_collector_on`)."""

from __future__ import annotations

import gc


def entry() -> int:
    gc.disable()
    from .cli import entry as cli_entry

    return cli_entry()
