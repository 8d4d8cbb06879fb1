"""Report files of a command (`--json`, `--junit`, `--html`, `--pcap`, `coverage -o`): checked
before the work starts, so a bad path costs nothing, and written after it one by one, so one
failure loses none of the others. Every problem is one line (exit 2 through the CLI)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LabError


class OutputError(LabError):
    """A report file cannot be written (before the run: refused; after it: the rest is kept)."""


def prepare(*paths: Path | None, folder: Path | None = None, inputs: Sequence[Path] = ()) -> None:
    """Before a run: make the folders of the output files (and the `--pcap` folder), and
    refuse a path that cannot be written or would overwrite a scenario being run."""
    sources = {p.resolve() for p in inputs}
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            raise OutputError(f"{path} is a folder, not a file")
        if path.resolve() in sources:
            raise OutputError(f"{path} is a scenario of this run: refusing to overwrite it")
        _make_folder(path.parent, path)
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise OutputError(f"cannot write {path}: permission denied")
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--pcap {folder}: not a folder")
        _make_folder(folder, folder)
        if not os.access(folder, os.W_OK):
            raise OutputError(f"cannot write under {folder}: permission denied")


def try_write(path: Path, write: Callable[[Path], object]) -> str:
    """Write one report; '' or why not (each report is tried, whatever the others did)."""
    try:
        write(path)
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    return ""


def write_all(writers: Sequence[tuple[Path | None, Callable[[Path], object]]]) -> None:
    """Try every (path, write) whose path is set; OutputError naming each that failed."""
    failed = [msg for path, write in writers if path is not None
              for msg in [try_write(path, write)] if msg]
    if failed:
        raise OutputError("; ".join(failed))


def _make_folder(folder: Path, wanted: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write {wanted}: {folder} (or a folder above it) is a file"
                          ) from None
    except OSError as exc:
        raise OutputError(f"cannot write {wanted}: {exc.strerror or exc}") from None
