"""The HTML report: escaping (unit, no sockets) and a real run rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from downgrade_lab.frontends.report.html import to_html
from downgrade_lab.frontends.report.svg import esc, sequence_svg
from tests.reportrun import ATTR, SCRIPT, hostile_record, index_of, real_record

# ---- escaping: everything from the record is text, never markup ----

DANGEROUS_TAGS = {"script", "img", "iframe", "object", "embed", "link", "base", "form", "style"}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def assert_inert(page: str) -> _Collector:
    doc = parsed(page)
    tags = {tag for tag, _ in doc.tags}
    assert not tags & DANGEROUS_TAGS - {"style"}, tags & DANGEROUS_TAGS
    assert [tag for tag, _ in doc.tags].count("style") == 1, "only our own style sheet"
    assert [attrs for tag, attrs in doc.tags if tag == "meta"] == [
        [("charset", "utf-8")], [("name", "viewport"), ("content", "width=device-width")]]
    handlers = [(tag, name) for tag, attrs in doc.tags for name, _ in attrs if name.startswith("on")]
    assert handlers == []
    # no remote reference anywhere
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//|javascript:)""", page, re.I)
    return doc


def test_hostile_text_everywhere_is_shown_as_text_not_markup() -> None:
    page = to_html(hostile_record())
    assert "<script" not in page.lower() and "<img" not in page.lower()
    doc = assert_inert(page)
    text = "".join(doc.text)
    assert SCRIPT in text and ATTR in text, "the hostile text is shown, escaped, not dropped"
    assert "\x1b" not in page and "\\x1b" in text, "control characters are made visible"


@pytest.mark.parametrize(("field", "value"), [
    ("verdict", 'PASS" onmouseover="alert(1)'),
    ("verdict", "<b>FAIL</b>"),
    ("scenario", SCRIPT),
    ("sender", ATTR),
    ("title", "</style><script>alert(3)</script>"),
    ("reason", "</textarea></title><script>alert(4)</script>"),
], ids=["verdict-attr", "verdict-tag", "scenario", "sender", "title-style", "reason"])
def test_one_hostile_field_stays_inert(field: str, value: str) -> None:
    page = to_html(hostile_record(**{field: value}))
    assert "<script" not in page.lower()
    assert_inert(page)


def test_an_unknown_verdict_is_drawn_as_error() -> None:
    page = to_html(hostile_record(verdict='PASS" onmouseover="x'))
    assert 'class="cell v-ERROR"' in page and "onmouseover" not in page.replace("&quot;", "")


@pytest.mark.parametrize(("raw", "shown"), [
    ("<a>", "&lt;a&gt;"),
    ('"q"', "&quot;q&quot;"),
    ("a&b", "a&amp;b"),
    ("nul\x00", "nul\\x00"),
    ("line\r\nnext", "line\nnext"),
    ("lone\rcr", "lone\\x0dcr"),
], ids=["tag", "quote", "amp", "nul", "crlf", "lone-cr"])
def test_esc(raw: str, shown: str) -> None:
    assert esc(raw) == shown


def test_the_diagram_marks_the_deleted_line_and_the_attackers_reply() -> None:
    step = hostile_record()["results"][0]["steps"][0]
    svg = sequence_svg(step, "opportunistic")
    # the sender's side: the deleted capability struck through in red
    assert re.search(r'<text [^>]*class="del"[^>]*>250-STARTTLS</text>', svg)
    assert 'class="strike"' in svg
    # the receiver's side: the same line as the receiver said it
    assert re.search(r'<text [^>]*class="said"[^>]*>250-STARTTLS</text>', svg)
    # the 502 the attacker made up, in its colour; the kept STARTTLS crossed out
    assert re.search(r'class="atk"[^>]*>(?:<title>[^<]*</title>)?502 ', svg) and 'class="cross"' in svg
    assert 'class="band-atk"' in svg  # TLS the attacker terminated


def test_tlsrpt_reports_are_shown_when_the_step_has_them() -> None:
    record = hostile_record()
    assert "TLS-RPT reports" in to_html(record)
    del record["results"][0]["steps"][0]["tlsrpt_reports"]
    assert "TLS-RPT reports" not in to_html(record)


def test_a_skipped_run_has_a_cell_and_a_story_without_steps() -> None:
    page = to_html(hostile_record(verdict="SKIP", reason="sender lacks clock", steps=[]))
    assert 'class="cell v-SKIP"' in page and "No step ran." in page


# ---- a real run, drawn by a real browser ----

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(.ci/run installs Debian's chromium)")
RGB = tuple[int, int, int]
FAIL_FILL: RGB = (0xfc, 0xa5, 0xa5)
PASS_FILL: RGB = (0xbb, 0xf7, 0xd0)
SENDER: RGB = (0x25, 0x63, 0xeb)
ATTACKER: RGB = (0x7c, 0x3a, 0xed)
RECEIVER: RGB = (0x15, 0x80, 0x3d)
RED: RGB = (0xdc, 0x26, 0x26)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    record = real_record()
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(to_html(record), encoding="utf-8")
    return record, path


def chromium(tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=90,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(tmp_path: Path, url: str, size: str) -> Any:
    from PIL import Image

    png = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={png}", f"--window-size={size}", url)
    return Image.open(png).convert("RGB")


def pixels(image: Any, colour: RGB, tol: int = 6) -> list[tuple[int, int]]:
    """Every (x, y) whose colour is within `tol` of `colour` on each channel."""
    width, data = image.size[0], image.tobytes()  # RGB, row by row
    r, g, b = colour
    return [(i // 3 % width, i // 3 // width) for i in range(0, len(data), 3)
            if abs(data[i] - r) <= tol and abs(data[i + 1] - g) <= tol and abs(data[i + 2] - b) <= tol]


def wide_rows(points: list[tuple[int, int]], min_width: int) -> dict[int, list[int]]:
    """Rows holding at least `min_width` points: a grid cell, not a chip or a letter."""
    rows: dict[int, list[int]] = {}
    for x, y in points:
        rows.setdefault(y, []).append(x)
    return {y: xs for y, xs in rows.items() if len(xs) >= min_width}


def lifeline(image: Any, colour: RGB) -> tuple[int, int, int] | None:
    """(x, top, bottom) of the longest vertical run of `colour`, if 300 px or more tall."""
    columns: dict[int, list[int]] = {}
    for x, y in pixels(image, colour, tol=3):
        columns.setdefault(x, []).append(y)
    if not columns:
        return None
    x, ys = max(columns.items(), key=lambda kv: len(kv[1]))
    return (x, min(ys), max(ys)) if len(ys) >= 300 else None


@pytest.mark.e2e  # a real run through the lab
@needs_chromium
def test_the_grid_is_drawn_as_a_coloured_matrix(report: tuple[dict[str, Any], Path],
                                                tmp_path: Path) -> None:
    _, path = report
    image = screenshot(tmp_path, path.as_uri(), "1280,900")
    fail_rows = wide_rows(pixels(image, FAIL_FILL), 120)  # cells are >= 150 px wide; chips ~60
    pass_rows = wide_rows(pixels(image, PASS_FILL), 120)
    assert fail_rows, "no FAIL cell drawn"
    # strip/no-policy: PASS PASS on one row; strip/starttls-enforce-warm below it: FAIL, PASS
    double_pass = [y for y, xs in pass_rows.items() if len(xs) >= 240]
    assert double_pass and min(double_pass) < min(fail_rows), "rows out of order"
    y = min(fail_rows)
    assert y in pass_rows and min(pass_rows[y]) > max(fail_rows[y]), \
        "the reference sender's PASS sits right of the opportunistic sender's FAIL"
    assert len(fail_rows) >= 20, "a cell is a block, not a line"
    # the twin: no story is open, so no lifeline is drawn (the detector below is not fooled)
    assert lifeline(image, SENDER) is None


@pytest.mark.e2e  # a real run through the lab
@needs_chromium
def test_a_cell_opens_a_sequence_diagram_with_the_stripped_line(
        report: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    record, path = report
    i = index_of(record, "strip/no-policy", "opportunistic")
    url = f"{path.as_uri()}#run-{i}"
    image = screenshot(tmp_path, url, "1280,1600")
    lifelines = {}
    for name, colour in (("sender", SENDER), ("attacker", ATTACKER), ("receiver", RECEIVER)):
        found = lifeline(image, colour)
        assert found is not None, f"the {name} lifeline is not drawn"
        lifelines[name] = found
    xs = [lifelines[n][0] for n in ("sender", "attacker", "receiver")]
    assert xs == sorted(xs), f"lifelines out of order: {lifelines}"
    sender_x, top, bottom = lifelines["sender"]
    struck = [(x, y) for x, y in pixels(image, RED, tol=10)
              if sender_x < x < lifelines["attacker"][0] and top < y < bottom]
    assert len(struck) >= 30, "no red strike-through between the sender and the attacker"
    # the DOM as the browser built it: the deleted line is there, struck, in this story
    dom = chromium(tmp_path, "--dump-dom", url)
    story = dom[dom.index(f'id="run-{i}"'):]
    end = story.find('<section class="story"', 1)
    story = story if end < 0 else story[:end]
    assert re.search(r'<text [^>]*class="del"[^>]*>250-STARTTLS</text>', story)
    assert re.search(r'<text [^>]*class="said"[^>]*>250-STARTTLS</text>', story)
    assert "The attacker read the message" in story
