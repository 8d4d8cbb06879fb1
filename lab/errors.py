"""The one error hierarchy of the lab. Every error a user can cause is a `LabError`."""

from __future__ import annotations


class LabError(Exception):
    """Root of every error the lab raises on purpose."""


class _FileKeyError(LabError):
    """An input file is malformed: the message names the file, the key and what is allowed."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)


class ScenarioError(_FileKeyError):
    """A scenario file is malformed: names the file, the key and what is allowed."""


class ServiceError(LabError):
    """A lab service failed (bind, handler error). Never the sender's fault."""


class SenderError(LabError):
    """A sender adapter could not start or run (not installed, bad template, ...)."""


class ProfileError(_FileKeyError, SenderError):
    """An MTA profile (`--sender FILE.toml`) is malformed: names the file, the key and what is
    allowed, as a `ScenarioError` does for a scenario."""
