"""`downgrade-lab merge`: run records (the shards of a CI matrix) joined into one (DESIGN §7).

Works on the JSON dicts `run --json` writes; a record of another major `schema_version` is
refused. `load` reads and checks one file, `join` is the pure part: the cells of every record,
each (scenario, sender) once, in the order a run of the whole catalogue lists them, with the
summary recounted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.record import SCHEMA_VERSION
from ..core.record import major as record_major
from ..core.verdict import VERDICTS, summary
from ..errors import LabError

# The run record's major schema version this lab reads (a record without `schema_version`
# predates it and has the same shape).
SCHEMA_MAJOR = int(record_major(SCHEMA_VERSION))


class MergeError(LabError):
    """A record that cannot be merged: one line naming the file."""


def major(version: object) -> int | None:
    """The major part of a `schema_version` (1, "1", "1.2"), None when unreadable."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MergeError(f"merge: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MergeError(f"merge: {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list) or not all(
            isinstance(r, dict) and isinstance(r.get("scenario"), str)
            and isinstance(r.get("sender"), str) and r.get("verdict") in VERDICTS
            for r in data["results"]):
        raise MergeError(f"merge: {path}: not a run record (`downgrade-lab run --json`)")
    if "schema_version" in data and major(data["schema_version"]) != SCHEMA_MAJOR:
        raise MergeError(f"merge: {path}: schema_version {data['schema_version']!r}, this lab "
                         f"reads {SCHEMA_MAJOR}.x (merge with the downgrade-lab that wrote it)")
    return data


def join(records: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One run record from (file name, record) pairs; MergeError if a cell is in two."""
    where: dict[tuple[str, str], str] = {}
    results: list[dict[str, Any]] = []
    for name, record in records:
        for result in record["results"]:
            cell = (result["scenario"], result["sender"])
            if cell in where:
                raise MergeError(f"merge: {cell[0]} x {cell[1]} is in both {where[cell]} and "
                                 f"{name} (shards of one run never overlap)")
            where[cell] = name
            results.append(result)
    # a run lists a folder's scenarios by file name (`mx/x-testing.toml` before `mx/x.toml`):
    # the same order here; stable, so senders keep theirs
    results.sort(key=lambda r: str(r["scenario"]) + ".toml")
    merged: dict[str, Any] = {k: v for k, v in records[0][1].items() if k not in
                              ("results", "summary", "duration_s")} if records else {}
    merged.update(results=results, summary=summary(str(r["verdict"]) for r in results),
                  duration_s=round(sum(float(r.get("duration_s") or 0) for _, r in records), 3))
    return merged
