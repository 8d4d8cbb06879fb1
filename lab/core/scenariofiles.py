"""Which files a scenario path names (DESIGN §4): a file, or every `*.toml` below a folder.

Pure apart from reading the file system: no parsing here (lab/core/scenario.py loads what this
finds). Every path that names nothing usable is a `ScenarioError` saying exactly why, never a
scenario silently left out of a run.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import ScenarioError

# What a path that is neither a file nor a folder is, for the error message.
_NOT_SCENARIO_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def scenario_files(given: Path) -> list[Path]:
    """The scenario files a path names: itself if a file, every `*.toml` below it if a folder
    (sorted, symlinked folders not followed). A folder that cannot be listed is an error, never
    a silent gap in the run."""
    where = str(given)
    try:
        mode = given.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        dangling = " (a dangling symlink)" if given.is_symlink() else ""
        raise ScenarioError(where, "", f"no such file or folder{dangling}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ScenarioError(where, "", "not a scenario file or folder (a symlink loop)") from None
        raise ScenarioError(where, "", f"cannot read: {_reason(exc)}") from None
    if stat.S_ISREG(mode):
        return [given]
    if not stat.S_ISDIR(mode):
        kind = next((name for test, name in _NOT_SCENARIO_KINDS if test(mode)), "not a file")
        raise ScenarioError(where, "", f"not a scenario file or folder ({kind})")

    def unreadable(exc: OSError) -> None:
        raise ScenarioError(where, "", f"cannot read folder {exc.filename or where}: "
                            f"{_reason(exc)}")

    files = [Path(folder, name) for folder, _, names in os.walk(given, onerror=unreadable)
             for name in names if name.endswith(".toml") and _is_file(os.path.join(folder, name))]
    if not files:
        raise ScenarioError(where, "", "no scenario files (*.toml) in this folder or below")
    return sorted(files)


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False  # a dangling symlink: nothing to load
    except OSError:
        return True  # there but not examinable: loading it says why


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
