"""Draws the demo's story (lab/frontends/demo.py): rich on a colour terminal, plain text elsewhere (pipes,
NO_COLOR, a projector that mangles escapes), and one self-contained HTML page (`--html`)."""

from __future__ import annotations

import argparse
import asyncio
import html
import textwrap
from collections.abc import Sequence

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import outputs
from .console import Environment, UsageError
from .demo import ACTS, Act, Fact, Line, build, pick, run_acts

WIDTH = 88  # plain text: fits a projector's terminal
COLUMN = 38
# What the attacker did to a line, in words, for every view. Invariant: every Line.change
# except "same" and "tls" has an entry.
CHANGE_WORDS = {"deleted": "deleted by the attacker", "added": "added by the attacker",
                "changed": "changed by the attacker", "dropped": "swallowed by the attacker",
                "forged": "the attacker answered this itself"}
DIALOGUE_HEAD = f"   {'the receiver said / got'.ljust(COLUMN)}  the sender heard / sent"
TONE_STYLE = {"good": "bold green", "bad": "bold red", "plain": ""}


def command(args: argparse.Namespace, env: Environment) -> int:
    """`downgrade-lab demo [NAME] [--sender NAME] [--pause] [--html FILE]`."""
    from ..core.senderchoice import UNAVAILABLE, Refusal
    from ..senders.registry import choose

    try:
        specs = pick(args.name)
    except ValueError as exc:
        raise UsageError(f"downgrade-lab demo: {exc}") from None
    choice = choose([args.sender], isolate=None)  # the demo runs on loopback only
    if isinstance(choice, Refusal):
        raise UsageError(f"downgrade-lab demo: {choice.message}" if choice.reason == UNAVAILABLE
                         else f"downgrade-lab demo: --sender takes a built-in sender, not "
                         f"{args.sender!r}")
    if args.html:
        outputs.prepare(args.html)  # before the acts run, not after
    results = asyncio.run(run_acts(specs, args.sender))
    acts = build(specs, results)
    for i, act in enumerate(acts):
        if i and args.pause:
            _wait(env, act)
        if env.colour:
            draw_rich(act, Console(file=env.stdout, force_terminal=True, highlight=False))
        else:
            env.stdout.write(draw_plain(act))
    if args.html:
        page = draw_html(acts)
        outputs.write_all([(args.html, lambda f: f.write_text(page, encoding="utf-8"))])
        env.stderr.write(f"wrote {args.html}\n")
    return 0


def _wait(env: Environment, act: Act) -> None:
    """Enter continues; so does end of input (no terminal, CI, `< /dev/null`): never hang."""
    env.stderr.write(f"-- press Enter for act {act.number}: {act.title} --\n")
    env.stderr.flush()
    try:
        env.stdin.readline()
    except (OSError, ValueError, AttributeError):  # closed or no stdin: nothing to wait for
        pass


def _heading(act: Act) -> str:
    return f"Act {act.number} of {len(ACTS)}: {act.title}  (sender: {act.sender})"


def _fill(text: str, indent: str = "") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def _cut(text: str, width: int = COLUMN) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def draw_plain(act: Act) -> str:
    out = [f"== {_heading(act)} ==", "", _fill(act.setup), ""]
    if act.dialogue:
        out.append(DIALOGUE_HEAD)
        out += [plain_line(line) for line in act.dialogue]
        out.append("")
    width = max((len(f.label) for f in act.facts), default=0)
    out += [f"  {f.label.ljust(width)}  {f.value}" for f in act.facts]
    if act.stolen:
        out += ["", "The message as the attacker read it:"]
        for ln in act.stolen.rstrip("\r\n").split("\r\n"):
            mark = "   <== the secret" if act.secret and act.secret in ln else ""
            out.append(f"  | {ln}{mark}")
    if act.moral:
        out += ["", _fill(f"=> {act.moral}")]
    if act.question:
        out.append(_fill(f"?  Ask the class: {act.question}"))
    return "\n".join(out) + "\n\n"


def plain_line(line: Line) -> str:
    """One dialogue line as plain text: receiver side, sender side, what the attacker did."""
    if line.change == "tls":
        return f"   {'=' * 20} TLS from here on: the attacker relays bytes it cannot read {'=' * 4}"
    arrow = "XX" if line.change in ("deleted", "dropped") else line.arrow
    note = f"  <== {CHANGE_WORDS[line.change].upper()}" if line.change in CHANGE_WORDS else ""
    return f"{arrow} {_cut(line.receiver).ljust(COLUMN)}  {_cut(line.sender).ljust(COLUMN)}{note}".rstrip()


def draw_rich(act: Act, console: Console) -> None:
    console.rule(Text(_heading(act), style="bold"))
    console.print(act.setup)
    if act.dialogue:
        table = Table(show_edge=False, box=None, padding=(0, 1))
        table.add_column("")
        table.add_column("the receiver said / got", style="cyan", overflow="fold")
        table.add_column("the sender heard / sent", style="cyan", overflow="fold")
        table.add_column("")
        for line in act.dialogue:
            table.add_row(*_rich_row(line))
        console.print(table)
    grid = Table.grid(padding=(0, 2))
    for fact in act.facts:
        grid.add_row(Text(fact.label, style="dim"), Text(fact.value, style=TONE_STYLE[fact.tone]))
    console.print(grid)
    if act.stolen:
        body = Text()
        for ln in act.stolen.rstrip("\r\n").split("\r\n"):
            body.append(ln + "\n", style="bold red" if act.secret and act.secret in ln else "")
        console.print(Panel(body, title="the message as the attacker read it", border_style="red"))
    if act.moral:
        console.print(Text("=> " + act.moral, style="bold"))
    if act.question:
        console.print(Text("?  Ask the class: " + act.question, style="italic"))
    console.print()


def _rich_row(line: Line) -> tuple[Text, Text, Text, Text]:
    if line.change == "tls":
        band = Text("── TLS from here on ──", style="bold green")
        return Text(""), band, band.copy(), Text("encrypted: the attacker cannot read", "green")
    if line.change not in CHANGE_WORDS:
        return Text(line.arrow, "dim"), Text(line.receiver), Text(line.sender), Text("")
    hit = "bold white on red"
    left = Text(line.receiver, style=hit + " strike" if line.change == "deleted" else hit)
    right = Text(line.sender, style=hit + " strike" if line.change == "dropped" else hit)
    return Text(line.arrow, "bold red"), left, right, Text(CHANGE_WORDS[line.change], "bold red")


_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
section{border-top:2px solid #ccc;margin-top:2em}
table.dialogue{border-collapse:collapse;font:13px ui-monospace,monospace;width:100%}
table.dialogue td,table.dialogue th{padding:1px 8px;text-align:left;vertical-align:top}
table.dialogue th{border-bottom:1px solid #999}
tr.changed td{background:#fdd}
del{color:#b00;font-weight:bold}
tr.tls td{background:#dfd;text-align:center;font-weight:bold}
.note{color:#b00;font-weight:bold}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}
dt{color:#666}
dd{margin:0}
.good{color:#070;font-weight:bold}
.bad{color:#b00;font-weight:bold}
pre.stolen{background:#222;color:#eee;padding:1em;overflow-x:auto}
pre.stolen mark{background:#b00;color:#fff}
.moral{font-weight:bold}
.question{font-style:italic}
"""


def draw_html(acts: Sequence[Act]) -> str:
    """The same story as one self-contained page: inline CSS, no scripts, no fetches."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Downgrade Lab: the classroom demo</title>", f"<style>{_CSS}</style>",
             "</head><body>", "<h1>MTA-STS against a STARTTLS downgrade: the classroom demo</h1>",
             "<p>Every line below was recorded from real runs of the lab: a DNS server, an HTTPS "
             "policy host, an SMTP receiver and an attacker's proxy on loopback.</p>"]
    for act in acts:
        parts.append(f'<section id="act-{act.number}"><h2>{_e(_heading(act))}</h2>')
        parts.append(f"<p>{_e(act.setup)}</p>")
        if act.dialogue:
            parts.append('<table class="dialogue"><tr><th></th><th>the receiver said / got</th>'
                         "<th>the sender heard / sent</th><th></th></tr>")
            parts += [_html_row(line) for line in act.dialogue]
            parts.append("</table>")
        parts.append("<dl>" + "".join(_html_fact(f) for f in act.facts) + "</dl>")
        if act.stolen:
            lines = [f"<mark>{_e(ln)}</mark>" if act.secret and act.secret in ln else _e(ln)
                     for ln in act.stolen.rstrip("\r\n").split("\r\n")]
            parts.append("<h3>The message as the attacker read it</h3>"
                         f'<pre class="stolen">{chr(10).join(lines)}</pre>')
        if act.moral:
            parts.append(f'<p class="moral">{_e(act.moral)}</p>')
        if act.question:
            parts.append(f'<p class="question">Ask the class: {_e(act.question)}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_row(line: Line) -> str:
    if line.change == "tls":
        return ('<tr class="tls"><td></td><td colspan="3">TLS from here on: the attacker relays '
                "bytes it cannot read</td></tr>")
    if line.change not in CHANGE_WORDS:
        return (f"<tr><td>{_e(line.arrow)}</td><td>{_e(line.receiver)}</td>"
                f"<td>{_e(line.sender)}</td><td></td></tr>")
    left = f"<del>{_e(line.receiver)}</del>" if line.change == "deleted" else _e(line.receiver)
    right = f"<del>{_e(line.sender)}</del>" if line.change == "dropped" else _e(line.sender)
    return (f'<tr class="changed"><td>{_e(line.arrow)}</td><td>{left}</td><td>{right}</td>'
            f'<td class="note">{_e(CHANGE_WORDS[line.change])}</td></tr>')


def _html_fact(fact: Fact) -> str:
    return f'<dt>{_e(fact.label)}</dt><dd class="{fact.tone}">{_e(fact.value)}</dd>'

