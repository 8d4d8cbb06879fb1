"""After `make real-matrix`: fail on ERROR cells (a lab fault, never a sender's), and compare the
per-sender counts with the table in docs/senders.md ("The matrices as measured").

    python scripts/real_matrix_check.py out/matrix-real.json [docs/senders.md]

Exit 1 if any cell is ERROR, or (with --strict) if a sender's counts differ from the table;
a difference alone is printed as a warning, because a newer Postfix, resolver or mailauth
legitimately moves cells (docs/senders.md then needs its explanations updated).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

VERDICTS = ("PASS", "WEAK", "FAIL", "SKIP", "ERROR")
ROW = re.compile(r"^\|\s*`([\w-]+)`\s*\|" + r"\s*(\d+)\s*\|" * len(VERDICTS) + r"\s*$")


def documented(page: str) -> dict[str, tuple[int, ...]]:
    """sender -> counts in VERDICTS order, from the measured-matrix table."""
    section = page.split("## The matrices as measured", 1)[-1]
    return {m[1]: tuple(int(n) for n in m.groups()[1:])
            for m in (ROW.match(line) for line in section.splitlines()) if m}


def measured(record: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    counts: dict[str, Counter[str]] = {}
    for r in record["results"]:
        counts.setdefault(r["sender"], Counter())[r["verdict"]] += 1
    return {s: tuple(c[v] for v in VERDICTS) for s, c in counts.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("record", type=Path)
    p.add_argument("doc", type=Path, nargs="?", default=Path("docs/senders.md"))
    p.add_argument("--strict", action="store_true", help="fail when counts differ from the doc")
    args = p.parse_args(argv)
    record = json.loads(args.record.read_text())
    docs = documented(args.doc.read_text())
    ours = measured(record)
    errors = [r for r in record["results"] if r["verdict"] == "ERROR"]
    drift = False
    print(f"{'sender':24} " + " ".join(f"{v:>5}" for v in VERDICTS) + "   docs/senders.md")
    for sender, counts in ours.items():
        want = docs.get(sender)
        same = want == counts
        drift |= want is not None and not same
        note = "same" if same else ("not in the table" if want is None else
                                    "DIFFERS: " + " ".join(str(n) for n in want))
        print(f"{sender:24} " + " ".join(f"{n:>5}" for n in counts) + f"   {note}")
    for r in errors:
        print(f"ERROR {r['scenario']} x {r['sender']}: {r['reason']}", file=sys.stderr)
    if drift:
        print("real-matrix: counts differ from docs/senders.md: update the table and the "
              "explanations of each FAIL", file=sys.stderr)
    return 1 if errors or (drift and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
