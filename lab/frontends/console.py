"""The console every face talks through (STYLE: httpie's model): the streams and colour as an
object, so a command is testable in-process, the exit statuses (DESIGN §6) and the error that
means bad usage. The CLI, progress, the demo and the live lab import it; it imports none of
them."""

from __future__ import annotations

import os
import sys
from enum import IntEnum
from typing import IO

from msgspec import Struct, field

from ..errors import LabError


class ExitStatus(IntEnum):
    OK = 0  # every expectation met
    FAILED = 1  # some expectation failed (or the lab erred)
    USAGE = 2  # bad usage or bad scenario
    INTERRUPTED = 130  # Ctrl-C (also when it ended the inner run of --isolate)


class UsageError(LabError):
    """Bad usage: one line on stderr, exit status USAGE."""


def _devnull(mode: str) -> IO[str]:
    return open(os.devnull, mode)  # noqa: SIM115 - lives as long as the process


class Environment(Struct):
    # A stream the shell closed (`>&-`) is None in sys: write to /dev/null, read end of input.
    stdout: IO[str] = field(default_factory=lambda: sys.stdout or _devnull("w"))
    stderr: IO[str] = field(default_factory=lambda: sys.stderr or _devnull("w"))
    stdin: IO[str] = field(default_factory=lambda: sys.stdin or _devnull("r"))  # demo --pause

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def stderr_is_terminal(self) -> bool:
        """Progress goes to stderr (stdout stays the matrix): a bar only if that is a terminal."""
        return bool(getattr(self.stderr, "isatty", lambda: False)())

    @property
    def colour(self) -> bool:
        return self.is_terminal and not os.environ.get("NO_COLOR")
