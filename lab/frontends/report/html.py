"""The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched).

The matrix is a grid of links; each cell opens the story of its run, an overlay shown by the
CSS `:target` rule (so `report.html#run-7` opens run 7 directly, and no JavaScript is needed).
A story shows per step the verdict, the sequence diagram (`lab.report.svg`), the timeline of
DNS answers, policy fetches, connections and stored mail, the sender's own report, what the
receiver stored, what the attacker read, and TLS-RPT reports when the step has them.

Everything from the run record is text to escape (`esc`): scenario titles come from files the
user may not have written, and SMTP lines from an attacker. Nothing is inserted as markup.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from ...core.record import AttackEntry, Attempt, PairRecord, RunRecord, SenderReport, StepRecord, as_run
from ...core.recordparts import JSONObject
from .svg import esc, moments, sequence_svg, timeline_svg
from .terminal import cell_outcome, summary_line

VERDICTS = ("PASS", "WEAK", "FAIL", "SKIP", "ERROR")

# Solid fills (the screenshot test looks for them). Lifelines: sender blue, attacker purple,
# receiver green; the attacker's changes are purple, deletions red.
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#111;background:#fff}
header,main,footer{padding:12px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px}h3{font-size:15px;margin:18px 0 6px}
.chips span{display:inline-block;padding:2px 10px;margin-right:6px;border-radius:10px}
.v-PASS{background:#bbf7d0}.v-WEAK{background:#fde68a}.v-FAIL{background:#fca5a5}
.v-SKIP{background:#e5e7eb}.v-ERROR{background:#f0abfc}
table{border-collapse:collapse}
.matrix td,.matrix th{border:1px solid #fff;padding:0}
.matrix th{background:#f3f4f6;padding:4px 8px;text-align:left}
.matrix .sid{padding:3px 8px;background:#f9fafb;max-width:430px}
.matrix .sid small{display:block;color:#555}
.cell{display:block;padding:4px 8px;min-width:150px;color:#111;text-decoration:none}
.cell b{display:block}.cell small{color:#333}.cell:hover{outline:2px solid #111}
.story{display:none}
.story:target{display:block;position:fixed;inset:0;overflow:auto;background:#fff;z-index:2;
 padding:12px 24px}
.back{float:right;font-size:16px}
.verdict{padding:2px 8px;border-radius:4px;font-weight:bold}
.step{border-top:2px solid #ddd;margin-top:16px}
.facts td,.facts th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
pre{background:#f6f8fa;padding:8px;white-space:pre-wrap;max-width:1080px;font-size:12px}
.stolen{border:3px solid #dc2626;background:#fef2f2;padding:4px 12px;max-width:1080px}
.stolen pre{background:#fff}
mark{background:#fca5a5}
svg text{font:12px monospace;fill:#111}
svg .mid{text-anchor:middle}svg .end{text-anchor:end}
svg .note{font-size:11px;fill:#555}
svg .del{fill:#dc2626}svg .atk{fill:#7c3aed;font-weight:bold}
svg .event{fill:#555;font-style:italic}svg .tls{fill:#166534}
svg .connh{font-weight:bold;fill:#333}
svg .conn{stroke:#999;stroke-dasharray:6 4}
svg .life{stroke-width:3}
svg .life.s,svg .headbox.s{stroke:#2563eb}svg .life.a,svg .headbox.a{stroke:#7c3aed}
svg .life.r,svg .headbox.r{stroke:#15803d}
svg .headbox{fill:#fff;stroke-width:3}svg .headt{font:bold 13px system-ui,sans-serif}
svg .arr{stroke-width:2}
svg .arr.s{stroke:#2563eb}svg .head.s{fill:#2563eb}
svg .arr.r{stroke:#15803d}svg .head.r{fill:#15803d}
svg .arr.a{stroke:#7c3aed}svg .head.a{fill:#7c3aed}
svg .strike{stroke:#dc2626;stroke-width:2}svg .cross{stroke:#dc2626;stroke-width:3}
svg .band-e2e{fill:#dcfce7}svg .band-atk{fill:#ede9fe}svg .band-up{fill:#e0f2fe}
svg .lane{font:bold 12px system-ui,sans-serif}svg .track{stroke:#ccc}
svg .dot.ok{fill:#15803d}svg .dot.bad{fill:#dc2626}
svg .num{font-size:9px;fill:#fff}
.legend svg{vertical-align:middle}
"""


def to_html(record: RunRecord | JSONObject) -> str:
    """The whole report for a run record (typed, or its JSON)."""
    record = as_run(record)
    results = record.results
    counts = Counter(r.verdict for r in results)  # a hand-made record may hold odd verdicts
    chips = "".join(f'<span class="v-{v}">{counts.get(v, 0)} {v}</span>' for v in VERDICTS)
    stories = "".join(_story(i, r) for i, r in enumerate(results))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\">"
        "<title>Downgrade Lab: MTA-STS conformance matrix</title>"
        f"<style>{CSS}</style></head><body>"
        "<header id=\"matrix\"><h1>Downgrade Lab: MTA-STS conformance matrix</h1>"
        f"<p class=\"chips\">{chips}</p><p>{esc(_summary(record))}. Click a cell for the story "
        "of that run: what the receiver said, what the sender heard, and what the attacker "
        "changed and read.</p>"
        f"{_legend()}</header><main>{_grid(results)}</main>{stories}"
        "<footer><small>Generated by downgrade-lab. Self-contained: no script, no fetch."
        "</small></footer></body></html>\n")


def _summary(record: RunRecord) -> str:
    try:
        return summary_line(record)
    except KeyError:  # a verdict that is none of the five
        return f"{len(record.results)} runs"


def _legend() -> str:
    return ('<p class="legend">Diagrams: <b style="color:#2563eb">sender</b> · '
            '<b style="color:#7c3aed">attacker</b> (its changes and its own replies in purple) · '
            '<b style="color:#15803d">receiver</b> · <span style="color:#dc2626;'
            'text-decoration:line-through">deleted by the attacker</span> · '
            '<span style="background:#dcfce7">TLS end to end</span> · '
            '<span style="background:#ede9fe">TLS terminated by the attacker</span></p>')


def _grid(results: tuple[PairRecord, ...]) -> str:
    scenarios: dict[str, PairRecord] = {}
    senders: dict[str, None] = {}
    cells: dict[tuple[str, str], int] = {}
    for i, r in enumerate(results):
        scenarios.setdefault(r.scenario, r)
        senders.setdefault(r.sender, None)
        cells[(r.scenario, r.sender)] = i
    head = "".join(f"<th>{esc(name)}</th>" for name in senders)
    rows = []
    for sid, first in scenarios.items():
        row = [f'<td class="sid">{esc(sid)}<small>{esc(first.title)}</small></td>']
        for name in senders:
            index = cells.get((sid, name))
            if index is None:
                row.append("<td></td>")
                continue
            r = results[index]
            verdict = _verdict(r.verdict)
            row.append(f'<td><a class="cell v-{verdict}" href="#run-{index}" '
                       f'title="{esc(r.reason or verdict)}"><b>{verdict}</b>'
                       f"<small>{esc(cell_outcome(r))}</small></a></td>")
        rows.append(f"<tr>{''.join(row)}</tr>")
    return (f'<table class="matrix"><thead><tr><th>scenario</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _verdict(value: object) -> str:
    """A verdict safe to use as a class name: only the five known ones."""
    return value if isinstance(value, str) and value in VERDICTS else "ERROR"


def _story(i: int, r: PairRecord) -> str:
    verdict = _verdict(r.verdict)
    steps = r.steps
    meta: list[tuple[str, object]] = [
        ("scenario", r.scenario), ("title", r.title), ("sender", r.sender),
        ("conformance ids", ", ".join(r.rfc)), ("tags", ", ".join(r.tags)), ("file", r.file),
        ("duration", f"{r.duration_s} s")]
    body = "".join(_step(n, len(steps), step, r.sender) for n, step in enumerate(steps, start=1))
    if not steps:
        body = "<p>No step ran.</p>"
    return (f'<section class="story" id="run-{i}"><a class="back" href="#matrix">✕ back to the '
            f'matrix</a><h2>{esc(r.scenario)} × {esc(r.sender)} '
            f'<span class="verdict v-{verdict}">{verdict}</span></h2>'
            f"<p>{esc(r.reason or 'every expectation met')}</p>"
            f"{_table(meta)}{body}</section>")


def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v if v is not None else '')}</td></tr>"
                    for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _step(n: int, total: int, step: StepRecord, sender: str) -> str:
    verdict = _verdict(step.verdict)
    attack = ", ".join(_attack(a) for a in step.attack)
    head = (f'<h3>Step {n} of {total}: attack {esc(attack or "none")} · expected '
            f'{esc(step.expect)}, observed {esc(step.outcome)} '
            f'<span class="verdict v-{verdict}">{verdict}</span></h3>')
    reason = step.reason
    why = [esc(reason)]
    if step.tolerate and "tolerated" not in reason:
        why.append(f"tolerated: {esc(', '.join(step.tolerate))}")
    if step.because and step.because not in reason:
        why.append(f"because: {esc(step.because)}")
    points = moments(step)
    timeline = "".join(f"<tr><td>{k}</td><td>+{p.ms:.1f} ms</td><td>{esc(p.lane)}</td>"
                       f"<td>{esc(p.text)}</td></tr>" for k, p in enumerate(points, start=1))
    parts = [head, f"<p>{' · '.join(w for w in why if w)}</p>",
             "<h3>The SMTP dialogue: what each side said and heard</h3>", sequence_svg(step, sender),
             _stolen(step)]
    if points:
        parts += ["<h3>Timeline: DNS answers, policy fetches, connections, stored mail</h3>",
                  timeline_svg(points),
                  f'<table class="facts"><tr><th>#</th><th>when</th><th>where</th><th>what</th>'
                  f"</tr>{timeline}</table>"]
    if step.report_transcript:  # a TLS report mailed through the attacker's proxy
        parts += ["<h3>The TLS report's own delivery, through the attacker</h3>",
                  sequence_svg(dataclasses.replace(step, connections=step.report_connections or (),
                                                   transcript=step.report_transcript), sender)]
    parts += [_sender_report(step.sender_report), _received(step)]
    if step.tlsrpt_reports is not None:
        parts.append(_tlsrpt(step))
    return f'<div class="step">{"".join(parts)}</div>'


def _tlsrpt(step: StepRecord) -> str:
    """The TLS reports (RFC 8460) that arrived during the step, and the step's check of them."""
    reports = step.tlsrpt_reports or ()
    check = step.report_check
    verdict = _verdict(check.verdict) if check else ""
    head = (f' <span class="verdict v-{verdict}">{verdict}</span> {esc(check.reason)}'
            if check else "")
    rows = "".join(
        _table([("channel", r.channel), ("valid", r.valid), ("problems", "; ".join(r.problems))])
        + f"<details><summary>the report</summary><pre>{esc(json.dumps(r.report, indent=1))}"
        "</pre></details>" for r in reports)
    flush = f"<p>The sender's account: {esc(_plain(step.report_flush))}</p>" \
        if step.has_report_flush and step.report_flush else ""
    return (f"<h3>TLS-RPT reports the sender sent ({len(reports)}){head}</h3>{flush}"
            f"{rows or '<p>None arrived.</p>'}")


def _attack(a: AttackEntry) -> str:
    """An attack as the scenario would name it: `kind(key=value, ...)`."""
    shown = a.to_json()
    if not isinstance(shown, dict):
        return str(shown)
    extra = ", ".join(f"{k}={_plain(v)}" for k, v in shown.items() if k != "kind")
    return f"{a.kind}({extra})" if extra else a.kind


def _stolen(step: StepRecord) -> str:
    """What the attacker read: the message itself (a red box) or only the clear preamble."""
    token = step.token
    read = [c for c in step.connections if c.attacker_read]
    if not read:
        return ""
    texts = []
    for c in read:
        text = esc(c.attacker_read)
        if token:
            text = text.replace(esc(token), f"<mark>{esc(token)}</mark>")
        more = c.attacker_read_bytes - len(c.attacker_read.encode())
        tail = f"\n[… {more} more bytes]" if more > 0 else ""
        texts.append(f"<p>from the connection to {esc(c.mx)}:</p><pre>{text}{tail}</pre>")
    if step.attacker_saw_body:
        return ('<div class="stolen"><h3>The attacker read the message</h3>'
                f"{''.join(texts)}</div>")
    return ("<details><summary>What the attacker read in the clear (no message)</summary>"
            f"{''.join(texts)}</details>")


_ATTEMPT_KEYS = [f.name for f in dataclasses.fields(Attempt)]


def _sender_report(report: SenderReport) -> str:
    rows: list[tuple[str, object]] = [("state", report.state), ("detail", report.detail)]
    for key, value in report.extra.items():
        if key != "attempts":
            rows.append((key, _plain(value)))
    attempts = report.attempts
    table = ""
    if attempts:
        head = "".join(f"<th>{esc(k)}</th>" for k in _ATTEMPT_KEYS)
        body = "".join("<tr>" + "".join(f"<td>{esc(_plain(getattr(a, k)))}</td>"
                                        for k in _ATTEMPT_KEYS) + "</tr>" for a in attempts)
        table = f'<p>Attempts:</p><table class="facts"><tr>{head}</tr>{body}</table>'
    return f"<h3>The sender's own report</h3>{_table(rows)}{table}"


def _plain(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _received(step: StepRecord) -> str:
    stored = step.received
    if not stored:
        return "<h3>What the genuine receiver stored</h3><p>Nothing: the message was not delivered.</p>"
    out = []
    for m in stored:
        tls = f"{m.tls_version} {m.cipher}, SNI {m.sni}" if m.tls else "no TLS (plaintext)"
        out.append(_table([("mx", m.mx), ("transport", tls), ("from", m.mail_from),
                           ("to", ", ".join(m.rcpt_tos)), ("size", m.size),
                           ("queue id", m.queue_id)])
                   + f"<details><summary>the message</summary><pre>{esc(m.data)}"
                     "</pre></details>")
    return "<h3>What the genuine receiver stored</h3>" + "".join(out)
