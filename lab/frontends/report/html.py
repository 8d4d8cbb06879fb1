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

import json
from collections import Counter

import msgspec

from ...core.dane import USAGE_NAMES
from ...core.daneevidence import abbreviate, answer_rows, short_record
from ...core.record import AttackEntry, Attempt, PairRecord, RunRecord, SenderReport, StepRecord, as_run
from ...core.recordparts import DaneEvidence, DnsQuery, JSONObject, ShownCert, TlsaEntry
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
.dnssec{border-left:4px solid #7c3aed;padding:0 12px;max-width:1180px}
.dnssec code{font-size:12px}
.dnssec .ok{background:#dcfce7}.dnssec .bad{background:#fee2e2}
.dnssec .atk{color:#7c3aed;font-weight:bold}
.badge{display:inline-block;padding:0 6px;border-radius:4px;font-size:11px;font-weight:bold;
 color:#fff;background:#7c3aed;margin-right:4px}
.badge.forged{background:#dc2626}
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
    parts = [head, f"<p>{' · '.join(w for w in why if w)}</p>"]
    if step.dane is not None:  # DANE steps only: no empty panel elsewhere
        parts.append(_dnssec(step.dane, step.dns_queries))
    parts += ["<h3>The SMTP dialogue: what each side said and heard</h3>",
              sequence_svg(step, sender), _stolen(step)]
    if points:
        parts += ["<h3>Timeline: DNS answers, policy fetches, connections, stored mail</h3>",
                  timeline_svg(points),
                  f'<table class="facts"><tr><th>#</th><th>when</th><th>where</th><th>what</th>'
                  f"</tr>{timeline}</table>"]
    if step.report_transcript:  # a TLS report mailed through the attacker's proxy
        parts += ["<h3>The TLS report's own delivery, through the attacker</h3>",
                  sequence_svg(msgspec.structs.replace(step, connections=step.report_connections or (),
                                                   transcript=step.report_transcript), sender)]
    parts += [_sender_report(step.sender_report), _received(step)]
    if step.tlsrpt_reports is not None:
        parts.append(_tlsrpt(step))
    return f'<div class="step">{"".join(parts)}</div>'


_MARK = {True: ("ok", "✓"), False: ("bad", "✗"), None: ("", "")}


def _digest(data: str) -> str:
    """A digest cut to tell two apart, the whole of it on hover."""
    return f'<code title="{esc(data)}">{esc(abbreviate(data, 0))}</code>'


def _dnssec(dane: DaneEvidence, queries: tuple[DnsQuery, ...]) -> str:
    """The DNSSEC evidence of a DANE step: the answers that matter with their signatures and
    what the attacker did to them, the TLSA records the domain published (and any forged in
    their place), and the certificate each TLS handshake showed against them."""
    keys = ", ".join(f"{k.zone}. key {k.key_tag}" for k in dane.keys)
    signed = ("signed" if dane.dnssec else "NOT signed (dnssec = false)") + (
        f", except {', '.join(dane.unsigned)}" if dane.unsigned else "")
    ds = {"valid": "a DS for its key at the parent", "missing": "no DS at the parent (an "
          "island of security: insecure)", "wrong": "a DS at the parent for another key"}
    intro = (f"<p>The lab zones below test. are {esc(signed)}; {esc(dane.domain)} has "
             f"{esc(ds.get(dane.ds, dane.ds))}. Genuine zone keys: {esc(keys or 'none')} (an RRSIG "
             "naming another key tag was made by the attacker).</p>")
    rows = []
    found = answer_rows(queries, dane)
    for r in found:
        cls, mark = _MARK[r.ok]
        records = "<br>".join(f'<code title="{esc(x)}">{esc(short_record(r.qtype, x))}</code>'
                              for x in r.records) or f"<i>{esc(r.rcode)}, no records</i>"
        did = "<br>".join(f'<span class="atk">{esc(a)}: {esc(w)}</span>'
                          for a, w in zip(r.attacks, r.attacker, strict=True)) or "nothing"
        badge = '<span class="badge forged">forged</span>' if r.forged else ""
        times = f" (×{r.times})" if r.times > 1 else ""
        rows.append(f"<tr><td>{esc(r.qname)}{times}</td><td>{esc(r.qtype)}</td>"
                    f'<td>{badge}{records}</td><td class="{cls}">{mark} {esc(r.state)}: '
                    f"{esc(r.detail)}</td><td>{did}</td></tr>")
    answers = (f'<table class="facts dns"><tr><th>name</th><th>type</th><th>answer</th>'
               f"<th>signature</th><th>what the attacker did</th></tr>{''.join(rows)}</table>"
               if rows else "<p>The sender asked for none of these names.</p>")
    unseen = [t for t in dane.tampering if not any(t.what in r.attacker for r in found)]
    if unseen:
        answers += "<p>What the attacker changed that the sender never asked for: " + "; ".join(
            f'<span class="atk">{esc(t.attack)}: {esc(t.name)} {esc(t.rtype)}: '
            f"{esc(t.what)}</span>" for t in unseen) + "</p>"
    return ('<div class="dnssec"><h3>DNSSEC: the DNS answers the sender got for the names DANE '
            f"rests on</h3>{intro}{answers}{_published(dane)}{_shown(dane.certificates)}</div>")


def _tlsa_rows(entries: tuple[TlsaEntry, ...], forged: bool) -> str:
    badge = '<span class="badge forged">forged</span>' if forged else ""
    return "".join(
        f"<tr><td>{badge}{esc(e.host)}</td><td>{e.usage} {esc(USAGE_NAMES.get(e.usage, '?'))}"
        f"</td><td>{e.selector} {'SPKI' if e.selector == 1 else 'Cert' if e.selector == 0 else '?'}"
        f"</td><td>{e.mtype} {_MTYPE.get(e.mtype, '?')}</td><td>{_digest(e.data)}</td></tr>"
        for e in entries)


_MTYPE = {0: "Full", 1: "SHA-256", 2: "SHA-512"}


def _published(dane: DaneEvidence) -> str:
    head = ("<tr><th>MX host</th><th>usage</th><th>selector</th><th>matching type</th>"
            "<th>association data</th></tr>")
    published = (f'<table class="facts">{head}{_tlsa_rows(dane.published, False)}</table>'
                 if dane.published else "<p>None: the domain publishes no TLSA record.</p>")
    forged = (f"<p>What the attacker served at _25._tcp instead (forge-tlsa):</p>"
              f'<table class="facts">{head}{_tlsa_rows(dane.forged, True)}</table>'
              if dane.forged else "")
    return ("<h4>The TLSA records the domain published: what the sender should have matched"
            f"</h4>{published}{forged}")


def _shown(certs: tuple[ShownCert, ...]) -> str:
    if not certs:
        return ("<h4>The certificate the sender was shown</h4><p>None: no TLS handshake "
                "reached the sender in this step.</p>")
    rows = []
    for c in certs:
        cls, mark = _MARK[c.matches]
        forged = (f'<br><span class="atk">matches the forged {esc(abbreviate(c.forged_match))}'
                  "</span>" if c.forged_match else "")
        who = "the attacker" if c.presented_by == "attacker" else "the genuine receiver"
        rows.append(f"<tr><td>{c.connection + 1}</td><td>{esc(c.mx)}</td>"
                    f'<td class="{"atk" if c.presented_by == "attacker" else ""}">{who} '
                    f"({esc(c.variant)})</td><td>{esc(c.subject)}</td><td>{esc(c.issuer)}</td>"
                    f'<td>{_digest(c.spki_sha256)}</td><td class="{cls}">{mark} {esc(c.why)}'
                    f"{forged}</td>"
                    "</tr>")
    return ("<h4>The certificate the sender was shown in the TLS handshake</h4>"
            '<table class="facts"><tr><th>connection</th><th>MX</th><th>presented by</th>'
            "<th>subject</th><th>issuer</th><th>SHA-256 of its SPKI</th><th>the published "
            f"TLSA?</th></tr>{''.join(rows)}</table>")


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


_ATTEMPT_KEYS = [f.name for f in msgspec.structs.fields(Attempt)]


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
