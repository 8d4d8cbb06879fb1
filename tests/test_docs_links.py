"""README.md and docs/ are read in a clone: every pointer they make stays inside the repository
(no `../` out of it, no design notes kept elsewhere), and every relative link lands on a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Files that live beside the repository, not in it (the team's design notes), and ways of
# pointing out of a clone.
OUTSIDE = re.compile(r"\.\./|/work/|\b(?:DESIGN|CONFORMANCE|STYLE|REAL-SENDERS)\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MENTION = re.compile(r"`((?:docs|lab|scenarios|tests|bench|scripts)/[\w./-]+\.(?:md|py|toml))`")


def problems(page: Path, text: str) -> list[str]:
    """What in `text` (the page `page`) points outside the repository or at nothing."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in OUTSIDE.finditer(line):
            found.append(f"{page.name}:{n}: points outside the repository: {m.group(0)!r}")
        for m in LINK.finditer(line):
            target = m.group(1).split("#")[0]
            if not target or re.match(r"[a-z]+:", target):
                continue  # an anchor, or a URL
            path = (page.parent / target).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                found.append(f"{page.name}:{n}: link to a missing file: {target!r}")
        for m in MENTION.finditer(line):
            if not (ROOT / m.group(1)).exists():
                found.append(f"{page.name}:{n}: names a missing file: {m.group(1)!r}")
    return found


def test_readme_and_docs_point_only_inside_the_repository() -> None:
    assert len(PAGES) > 10
    assert [p for page in PAGES for p in problems(page, page.read_text())] == []


def test_readme_links_the_architecture_page() -> None:
    assert "`docs/architecture.md`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(("text", "problem"), [
    ("see `../shared/DESIGN.md`", "points outside the repository: '../'"),
    ("the contract (DESIGN §6)", "points outside the repository: 'DESIGN'"),
    ("ids of CONFORMANCE.md", "points outside the repository: 'CONFORMANCE'"),
    ("git clone /work/main /tmp/ci", "points outside the repository: '/work/'"),
    ("[the guide](no-such-page.md)", "link to a missing file: 'no-such-page.md'"),
    ("[up](../../etc/passwd)", "points outside the repository: '../'"),
    ("read `docs/no-such.md`", "names a missing file: 'docs/no-such.md'"),
], ids=["shared", "design-section", "conformance-file", "other-checkout", "dead-link", "escape", "mention"])
def test_a_pointer_outside_or_to_nothing_is_caught(text: str, problem: str) -> None:
    found = problems(ROOT / "docs" / "page.md", f"line one\n{text}\n")
    assert any(problem in p and p.startswith("page.md:2: ") for p in found), found


def test_links_inside_the_repository_pass() -> None:
    text = ("[scenarios](scenarios.md), [the run record](run-record.md#compatibility), "
            "[RFC 8461](https://www.rfc-editor.org/rfc/rfc8461), `lab/core/policy.py`, "
            "`docs/architecture.md`")
    assert problems(ROOT / "docs" / "page.md", text) == []
