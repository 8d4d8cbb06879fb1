"""Which files a scenario path names (DESIGN §4): a file, or every `*.toml` below a folder;
`builtin` and `builtin/FOLDER` name the bundled catalogue (read through importlib.resources).

Pure apart from reading the file system: no parsing here (lab/core/scenario.py loads what this
finds). Every path that names nothing usable is a `ScenarioError` saying exactly why, never a
scenario silently left out of a run.
"""

from __future__ import annotations

import errno
import os
import stat
from importlib import resources
from pathlib import Path, PurePosixPath

from ..errors import ScenarioError

# What a path that is neither a file nor a folder is, for the error message.
_NOT_SCENARIO_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


# The bundled catalogue's name on the command line, the pytest plugin's `--lab-scenarios` and
# `up --scenario`. A local folder of that name is `./builtin/...`.
BUILTIN = "builtin"
_PACKAGE = __name__.rsplit(".", 2)[0]  # downgrade_lab: lab/scenarios links to ../scenarios


def is_builtin(given: str | Path) -> bool:
    """Whether a path as typed names the bundled catalogue (`builtin`, `builtin/...`); only
    text does: a `Path` is always the file system's."""
    return isinstance(given, str) and (given == BUILTIN or given.startswith(BUILTIN + "/"))


def builtin_root() -> Path:
    """The folder of the bundled catalogue: inside the installed package, or the checkout's
    `scenarios/` through the `lab/scenarios` link."""
    root = resources.files(_PACKAGE).joinpath("scenarios")
    if not isinstance(root, Path) or not root.is_dir():
        raise ScenarioError(BUILTIN, "", "the bundled catalogue is missing from this install")
    return root


def builtin_folders() -> list[str]:
    return sorted(p.name for p in builtin_root().iterdir() if p.is_dir())


def locate(given: str | Path) -> tuple[Path, Path | None]:
    """The file-system path a scenario path names, and the folder its ids are relative to when
    that is fixed (the catalogue's root for `builtin/...`, so `builtin/strip` gives the ids
    `strip/...`, as the checkout's `scenarios/` does), else None."""
    if not is_builtin(given):
        return Path(given), None
    assert isinstance(given, str)
    root = builtin_root()
    inner = PurePosixPath(given[len(BUILTIN):].strip("/") or ".")
    if inner.is_absolute() or ".." in inner.parts:
        raise ScenarioError(given, "", "not a folder of the bundled catalogue")
    path = root.joinpath(*inner.parts)
    if not path.exists():
        raise ScenarioError(given, "", "no such folder or file in the bundled catalogue "
                            f"(folders: {', '.join(builtin_folders())})")
    return path, root


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
