"""SVG drawings for the HTML report: the sequence diagram of one step and its timeline.

Pure functions from typed run-record steps (DESIGN §6, lab/core/record.py) to SVG text.
Every string that came from the run (SMTP lines, host names, DNS answers) is attacker- or
scenario-controlled: it goes through
`esc()` and nowhere else. Colours are CSS classes defined in `lab.report.html.CSS`, so the page
stays consistent and the diagram has no inline styles to escape.
"""

from __future__ import annotations

import difflib
import html
import re

from msgspec import Struct, field

from ...core.record import StepRecord, as_step
from ...core.recordparts import Connection, JSONObject, TranscriptEntry

# Geometry (px). The three lifelines; a label sits above its arrow inside one segment.
X_SENDER, X_ATTACKER, X_RECEIVER = 150, 560, 970
WIDTH = 1120
LINE_H = 15
CHAR_W = 7.3  # 12 px monospace, an upper bound so labels stay inside their segment
NOTE_W = 6.7  # 11 px monospace
SEGMENT_W = X_ATTACKER - X_SENDER - 20
MAX_CHARS = int(SEGMENT_W / CHAR_W)
HEAD_H = 54
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def esc(value: object) -> str:
    """Text for HTML or SVG: markup-escaped, control characters shown as \\xNN (CRLF is a
    line end, not a control character worth showing)."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value).replace("\r\n", "\n"))
    return html.escape(text, quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _clip(text: str) -> str:
    return _short(text, MAX_CHARS)


class _Canvas(Struct):
    """Rows are appended top to bottom; bands (TLS sessions) and lifelines go underneath."""
    y: int = HEAD_H + 10
    under: list[str] = field(default_factory=list)
    over: list[str] = field(default_factory=list)

    def text(self, x: float, y: float, text: str, cls: str, *, full: str | None = None) -> None:
        title = f"<title>{esc(full)}</title>" if full is not None and full != text else ""
        self.over.append(f'<text x="{x:.0f}" y="{y:.0f}" class="{cls}">{title}{esc(text)}</text>')

    def arrow(self, x1: float, x2: float, y: float, cls: str) -> None:
        head = 8 if x2 > x1 else -8
        self.over.append(f'<line x1="{x1:.0f}" y1="{y}" x2="{x2 - head:.0f}" y2="{y}" '
                         f'class="arr {cls}"/><polygon points="{x2:.0f},{y} {x2 - head:.0f},'
                         f'{y - 4} {x2 - head:.0f},{y + 4}" class="head {cls}"/>')


class _Label(Struct, frozen=True):
    text: str
    cls: str = "said"
    struck: bool = False
    note: str = ""


def _lines(text: str | None) -> list[str]:
    return (text or "").split("\n")


def _heard_labels(said: list[str], heard: list[str], attack: str | None) -> list[_Label]:
    """What the sender heard, with the attacker's changes: deleted lines struck through,
    added or rewritten ones in the attacker's colour."""
    out: list[_Label] = []
    who = attack or "the attacker"
    matcher = difflib.SequenceMatcher(a=said, b=heard, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            out += [_Label(line) for line in heard[b1:b2]]
            continue
        gone = "" if op == "replace" else f"deleted by {who}"
        out += [_Label(line, "del", struck=True, note=gone) for line in said[a1:a2]]
        made = "rewritten" if op == "replace" else "added"
        out += [_Label(line, "atk", note=f"{made} by {who}") for line in heard[b1:b2]]
    return out


def _layout(labels: list[_Label]) -> list[_Label]:
    """One label per drawn line: a note that does not fit beside its text gets its own line."""
    out: list[_Label] = []
    for label in labels:
        room = SEGMENT_W - len(_clip(label.text)) * CHAR_W - 12
        if not label.note or (len(label.note) + 2) * NOTE_W <= room:
            out.append(label)
        else:
            out += [_Label(label.text, label.cls, label.struck),
                    _Label("  ← " + label.note, "note " + label.cls)]
    return out


def _draw_labels(c: _Canvas, x: float, top: int, labels: list[_Label]) -> None:
    for i, label in enumerate(labels):
        y = top + (i + 1) * LINE_H
        shown = _clip(label.text)
        c.text(x, y, shown, label.cls, full=label.text)
        if label.struck:
            width = max(8.0, len(shown) * CHAR_W)
            c.over.append(f'<line x1="{x - 1:.0f}" y1="{y - 4}" x2="{x + width:.0f}" '
                          f'y2="{y - 4}" class="strike"/>')
        if label.note:
            c.text(x + len(shown) * CHAR_W + 12, y, "← " + label.note, "note " + label.cls)


def _row(c: _Canvas, left: list[_Label] | None, right: list[_Label] | None, *,
         left_to_right: bool, left_cls: str, right_cls: str, stop: str = "") -> None:
    """One entry: a label and an arrow in each segment that carried it (None: not carried)."""
    left = None if left is None else _layout(left)
    right = None if right is None else _layout(right)
    n = max(len(left or []), len(right or []), 1)
    top, arrow_y = c.y, c.y + n * LINE_H + 6
    if left is not None:
        _draw_labels(c, X_SENDER + 10, top, left)
        a, b = (X_SENDER, X_ATTACKER) if left_to_right else (X_ATTACKER, X_SENDER)
        c.arrow(a, b, arrow_y, left_cls)
    if right is not None:
        _draw_labels(c, X_ATTACKER + 10, top, right)
        a, b = (X_ATTACKER, X_RECEIVER) if left_to_right else (X_RECEIVER, X_ATTACKER)
        c.arrow(a, b, arrow_y, right_cls)
    if stop:  # the attacker kept the command: a cross where it ended
        x, y = X_ATTACKER + 14, arrow_y
        c.over.append(f'<path d="M{x - 5},{y - 5}L{x + 5},{y + 5}M{x - 5},{y + 5}L{x + 5},{y - 5}" '
                      f'class="cross"/>')
        c.text(x + 12, y + 4, stop, "note del")
    c.y = arrow_y + 12


def _note(c: _Canvas, text: str, cls: str = "event") -> None:
    c.text(X_ATTACKER, c.y + 12, text, f"{cls} mid")
    c.y += 22


def _cert(attacks: list[str]) -> str:
    for description in attacks:
        match = re.search(r"intercept-tls\(.*?cert=([\w-]+)", description)
        if match:
            return match.group(1)
    return "self-signed" if any(a.startswith("intercept-tls") for a in attacks) else "?"


class _Band(Struct):
    top: int
    kind: str  # passthrough | intercepted


def _tls_facts(step: StepRecord, mx: str) -> str:
    for stored in step.received:
        if stored.mx == mx and stored.tls:
            return (f"the receiver terminated {stored.tls_version or 'TLS'} "
                    f"{stored.cipher or ''} SNI {stored.sni or '-'}")
    for attempt in step.sender_report.attempts:
        if attempt.mx == mx and attempt.tls:
            verified = "verified" if attempt.verified else "NOT verified"
            return f"sender: {attempt.tls_version or 'TLS'}, certificate {verified}"
    return ""


def _entry(c: _Canvas, e: TranscriptEntry, step: StepRecord, conn: Connection | None,
           bands: list[_Band]) -> None:
    kind, said, heard = e.kind, e.said, e.heard
    attack, origin = e.attack, e.origin
    if kind == "event":
        if said == "tls-passthrough":
            _note(c, "STARTTLS: TLS end to end, sender ⇄ receiver; the attacker copies "
                     "bytes it cannot read", "tls")
            bands.append(_Band(c.y - 22, "passthrough"))
            up, down = (conn.passthrough_to_receiver, conn.passthrough_to_sender) if conn else (0, 0)
            _note(c, f"⇄ encrypted: {up} bytes to the receiver, {down} bytes to the sender", "tls")
            facts = _tls_facts(step, conn.mx if conn else "")
            if facts:
                _note(c, facts, "tls")
        elif said == "tls-intercepted":
            cert = _cert(list(conn.attacks) if conn else [])
            _note(c, f"STARTTLS: the ATTACKER terminates TLS with a {cert} certificate "
                     "and opens its own TLS to the receiver", "atk")
            bands.append(_Band(c.y - 22, "intercepted"))
        else:
            _note(c, said, "atk" if origin == "attacker" else "event")
        return
    if kind in ("command", "data"):
        left = [_Label(said)]
        stop = "" if heard is not None else f"kept by the attacker ({attack or 'attack'})"
        right = None if heard is None else [_Label(heard, "atk" if e.changed else "said",
                                                   note=f"renamed by {attack}" if e.changed
                                                   else "")]
        if kind == "data":  # the relay parses only what it can read: the attacker has it
            left = [_Label(said, "atk", note="the attacker reads the message")]
        _row(c, left, right, left_to_right=True, left_cls="s", right_cls="s", stop=stop)
        return
    # a reply
    if origin == "attacker":
        labels = [_Label(line, "atk") for line in _lines(str(heard or said))]
        labels[-1] = _Label(labels[-1].text, "atk", note=f"made up by {attack or 'the attacker'}")
        _row(c, labels, None, left_to_right=False, left_cls="a", right_cls="a")
        return
    said_lines = _lines(said)
    right = [_Label(line) for line in said_lines]
    if heard is None:
        _row(c, None, right, left_to_right=False, left_cls="r", right_cls="r",
             stop="kept by the attacker")
        return
    left = _heard_labels(said_lines, _lines(heard), attack) if e.changed else \
        [_Label(line) for line in _lines(heard)]
    _row(c, left, right, left_to_right=False, left_cls="a" if e.changed else "r",
         right_cls="r")


def _close_bands(c: _Canvas, bands: list[_Band]) -> None:
    for band in bands:
        h = c.y - band.top
        if band.kind == "passthrough":
            c.under.append(f'<rect x="{X_SENDER - 30}" y="{band.top}" width="'
                           f'{X_RECEIVER - X_SENDER + 60}" height="{h}" rx="6" class="band-e2e"/>')
        else:
            c.under.append(f'<rect x="{X_SENDER - 30}" y="{band.top}" width="'
                           f'{X_ATTACKER - X_SENDER + 30}" height="{h}" rx="6" class="band-atk"/>'
                           f'<rect x="{X_ATTACKER}" y="{band.top}" width="'
                           f'{X_RECEIVER - X_ATTACKER + 30}" height="{h}" rx="6" class="band-up"/>')
    bands.clear()


def sequence_svg(step: StepRecord | JSONObject, sender: str) -> str:
    """The step's SMTP dialogue as a sequence diagram: sender, attacker and receiver."""
    step = as_step(step)
    c = _Canvas()
    connections = step.connections
    transcript = step.transcript
    groups: dict[int, list[TranscriptEntry]] = {}
    for e in transcript:
        groups.setdefault(e.connection, []).append(e)
    if not transcript:
        _note(c, "no SMTP connection crossed the attacker in this step")
    receivers: list[str] = []
    for index, entries in sorted(groups.items()):
        conn = connections[index] if 0 <= index < len(connections) else None
        mx = (conn.mx if conn else "") or entries[0].mx or "?"
        receivers.append(mx)
        attacks = ", ".join(conn.attacks if conn else ()) or "none"
        more = " (continued from the previous step)" if conn and conn.continued else ""
        c.over.append(f'<line x1="20" y1="{c.y + 4}" x2="{WIDTH - 20}" y2="{c.y + 4}" class="conn"/>')
        c.text(30, c.y + 18, f"connection {index + 1}: the sender dialled {mx}{more} · attacks: "
               f"{attacks}", "connh")
        c.y += 28
        bands: list[_Band] = []
        for e in entries:
            _entry(c, e, step, conn, bands)
        _close_bands(c, bands)
        c.y += 6
    height = c.y + 10
    # the genuine receiver: where the mail was stored, else the names the sender dialled (for
    # spoof-mx that is the attacker's own MX, which relays to the genuine one)
    stored = [m.mx for m in step.received]
    who = ", ".join(dict.fromkeys(stored or receivers)) or "receiver"
    heads = [(X_SENDER, "s", f"sender: {sender}"), (X_ATTACKER, "a", "attacker (on path)"),
             (X_RECEIVER, "r", f"genuine receiver: {who}")]
    life = "".join(f'<line x1="{x}" y1="{HEAD_H}" x2="{x}" y2="{height}" class="life {k}"/>'
                   f'<rect x="{x - 145}" y="8" width="290" height="{HEAD_H - 16}" rx="6" '
                   f'class="headbox {k}"/><text x="{x}" y="{HEAD_H / 2 + 4:.0f}" '
                   f'class="headt mid">{esc(_short(name, 36))}</text>' for x, k, name in heads)
    return (f'<svg class="seq" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
            f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="sequence diagram">{"".join(c.under)}{life}{"".join(c.over)}</svg>')


class Moment(Struct, frozen=True):
    """One point of the step's timeline: `ms` after the first, on a `lane`."""
    ms: float
    lane: str
    text: str
    ok: bool


LANES = ("DNS", "policy host", "SMTP", "receiver", "TLS-RPT")


def moments(step: StepRecord | JSONObject) -> list[Moment]:
    """DNS answers, policy fetches, connections and stored mail of a step, in time order."""
    step = as_step(step)
    raw: list[tuple[float, str, str, bool]] = []
    for q in step.dns_queries:
        answers = "; ".join(q.answers) or "no answer"
        note = f" ({q.note})" if q.note else ""
        raw.append((q.time, "DNS", f"{q.qname} {q.qtype} → {q.rcode}: {answers}{note}",
                    q.rcode == "NOERROR"))
    for f in step.policy_fetches:
        if f.blocked:
            text, ok = f"policy fetch blocked by the attacker: {f.blocked}", False
        else:
            text = f"{f.method} https://{f.host or f.sni}{f.path} → {f.status}"
            ok = f.status == 200
        raw.append((f.time, "policy host", text, ok))
    for i, conn in enumerate(step.connections):
        if not conn.continued:
            attacks = ", ".join(conn.attacks) or "no attack"
            raw.append((conn.started, "SMTP", f"connection {i + 1} to {conn.mx} ({attacks})",
                        not conn.attacks))
    for m in step.received:
        how = f"over {m.tls_version}" if m.tls else "in plaintext"
        safe = m.tls and not step.attacker_saw_body
        raw.append((m.time, "receiver", f"{m.mx} stored the message {how}", safe))
    for r in step.tlsrpt_reports or ():
        problems = "; ".join(r.problems)
        raw.append((r.time, "TLS-RPT", f"report by {r.channel}: "
                    f"{'valid' if r.valid else 'invalid'} {problems}".strip(), r.valid))
    raw = [r for r in raw if r[0] > 0]
    if not raw:
        return []
    t0 = min(r[0] for r in raw)
    return [Moment((t - t0) * 1000, lane, text, ok) for t, lane, text, ok in sorted(raw)]


def timeline_svg(points: list[Moment]) -> str:
    """One lane per service, a numbered dot per moment (the numbers key the table below it)."""
    if not points:
        return ""
    left, right, lane_h = 120, WIDTH - 40, 26
    span = max(points[-1].ms, 1.0)
    lanes = [lane for lane in LANES if lane != "TLS-RPT" or any(p.lane == lane for p in points)]
    height = 30 + lane_h * len(lanes)
    parts = [f'<text x="{right}" y="14" class="note end">{span:.0f} ms</text>'
             f'<text x="{left}" y="14" class="note">0 ms</text>']
    for i, lane in enumerate(lanes):
        y = 30 + i * lane_h + lane_h // 2
        parts.append(f'<text x="10" y="{y + 4}" class="lane">{esc(lane)}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" class="track"/>')
    for n, p in enumerate(points, start=1):
        x = left + (right - left) * p.ms / span
        y = 30 + lanes.index(p.lane) * lane_h + lane_h // 2
        parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="7" class="dot {"ok" if p.ok else "bad"}">'
                     f'<title>{n}. +{p.ms:.1f} ms {esc(p.text)}</title></circle>'
                     f'<text x="{x:.1f}" y="{y + 3}" class="num mid">{n}</text>')
    return (f'<svg class="tl" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline">{"".join(parts)}</svg>')
