"""The conformance matrix on a terminal (rich) or as plain text (pipes, CI logs)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ...core.record import PairRecord, RunRecord, as_pair, as_run
from ...core.recordparts import JSONObject

if TYPE_CHECKING:  # rich is imported for a terminal only: plain text needs none of it
    from rich.console import Console

STYLE = {"PASS": "bold green", "WEAK": "bold yellow", "FAIL": "bold red", "SKIP": "dim",
         "ERROR": "bold magenta"}


def cell_outcome(result: PairRecord | JSONObject) -> str:
    """The observed outcome shown in a cell: the deciding step's (first non-PASS), else the last."""
    steps = as_pair(result).steps
    for step in steps:
        if step.verdict != "PASS":
            return step.outcome
    return steps[-1].outcome if steps else ""


# Worst first, for the TLS-RPT suffix of a cell.
_REPORT_ORDER = ("ERROR", "FAIL", "PASS", "SKIP")


def cell_report(result: PairRecord | JSONObject) -> str:
    """`report PASS|FAIL|SKIP` when a step checked the sender's TLS report (RFC 8460): the
    worst of those checks. "" when no step had a report expectation."""
    seen = {s.report_check.verdict for s in as_pair(result).steps if s.report_check is not None}
    for verdict in _REPORT_ORDER:
        if verdict in seen:
            return f"report {verdict}"
    return ""


def _grid(record: RunRecord) -> tuple[list[str], list[str], dict[tuple[str, str], PairRecord]]:
    scenarios: dict[str, None] = {}
    senders: dict[str, None] = {}
    cells: dict[tuple[str, str], PairRecord] = {}
    for r in record.results:
        scenarios.setdefault(r.scenario, None)
        senders.setdefault(r.sender, None)
        cells[(r.scenario, r.sender)] = r
    return list(scenarios), list(senders), cells


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (an escape sequence in a scenario title
    or in what a hostile peer said) shown as \\xNN instead of acted upon."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def reasons(record: RunRecord | JSONObject) -> list[tuple[str, str, str, str]]:
    """(verdict, scenario, sender, one-line reason) for every cell that is not a plain PASS."""
    return [(r.verdict, r.scenario, r.sender, printable(r.reason))
            for r in as_run(record).results if r.verdict != "PASS"]


def summary_line(record: RunRecord | JSONObject) -> str:
    record = as_run(record)
    counts = record.counts()
    parts = [f"{counts[v]} {v}" for v in ("PASS", "WEAK", "FAIL", "SKIP", "ERROR")]
    return ", ".join(parts) + f" in {record.duration_s:.1f} s"


def render(record: RunRecord | JSONObject, out: IO[str], *, colour: bool,
           width: int | None = None) -> None:
    record = as_run(record)
    if colour:
        from rich.console import Console

        _render_rich(record, Console(file=out, force_terminal=True, width=width,
                                     highlight=False))
    else:
        _render_plain(record, out)


def _render_rich(record: RunRecord, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    scenarios, senders, cells = _grid(record)
    table = Table(title="MTA-STS downgrade matrix", show_lines=False)
    table.add_column("scenario", style="bold")
    for name in senders:
        table.add_column(name)
    for sid in scenarios:
        row: list[Text | str] = [sid]
        for name in senders:
            r = cells.get((sid, name))
            if r is None:
                row.append("")
                continue
            cell = Text.assemble((r.verdict, STYLE[r.verdict]), " ",
                                 (cell_outcome(r), "dim"))
            rpt = cell_report(r)
            if rpt:
                cell.append_text(Text.assemble(" · ", (rpt, STYLE.get(rpt.split()[1], ""))))
            row.append(cell)
        table.add_row(*row)
    console.print(table)
    for verdict, sid, sender, reason in reasons(record):
        console.print(Text.assemble((f"{verdict:5}", STYLE[verdict]), f" {sid} × {sender}: {reason}"))
    console.print(summary_line(record))


def _render_plain(record: RunRecord, out: IO[str]) -> None:
    scenarios, senders, cells = _grid(record)
    texts = {k: " ".join(x for x in (r.verdict, cell_outcome(r), cell_report(r)) if x)
             for k, r in cells.items()}
    first = max([len("scenario"), *map(len, scenarios)])
    widths = [max([len(name), *(len(texts.get((s, name), "")) for s in scenarios)])
              for name in senders]
    header = ["scenario".ljust(first), *(n.ljust(w) for n, w in zip(senders, widths, strict=True))]
    lines = ["  ".join(header)]
    for sid in scenarios:
        row = [sid.ljust(first)]
        row += [texts.get((sid, n), "").ljust(w) for n, w in zip(senders, widths, strict=True)]
        lines.append("  ".join(row).rstrip())
    for verdict, sid, sender, reason in reasons(record):
        lines.append(f"{verdict:5} {sid} x {sender}: {reason}")
    lines.append(summary_line(record))
    out.write("\n".join(lines) + "\n")


def render_list(rows: Sequence[tuple[str, str, str]], out: IO[str]) -> None:
    """`downgrade-lab list`: id, conformance ids, title."""
    if not rows:
        out.write("no scenarios\n")
        return
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for sid, rfc, title in rows:
        out.write(f"{sid.ljust(w0)}  {rfc.ljust(w1)}  {printable(title)}\n")
