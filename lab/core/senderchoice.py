"""Which senders may run here (DESIGN §5, §7, §8). Pure: one rule for `downgrade-lab run`,
`downgrade-lab demo` and the pytest plugin, which differ only in the facts they pass.

The facts: the names asked for (none: every built-in sender that can run here), what each
known sender is (built in: in-process on loopback; else a real MTA), whether this command can
isolate (`--isolate` given, not given, or impossible: the demo and the plugin run on loopback
only), and whether a sender can run on this machine. Availability may probe the machine
(programs, packages), so it is a function asked only about the senders that would run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from msgspec import Struct

UNKNOWN = "unknown"
NEEDS_ISOLATE = "needs-isolate"
UNAVAILABLE = "unavailable"

Availability = Callable[[str], tuple[bool, str]]  # name -> (can run here, why not)


class Refusal(Struct, frozen=True):
    """Why the run cannot start: the first requested sender that may not run, and the reason.
    `message` is one line without the command's prefix."""

    name: str
    reason: str  # unknown | needs-isolate | unavailable
    message: str


class SenderChoice(Struct, frozen=True):
    """The senders that run, in order, each once. `skip`: those among them that cannot run on
    this machine, with why (only when the caller skips such senders instead of refusing)."""

    run: tuple[str, ...]
    skip: tuple[tuple[str, str], ...] = ()


class _Facts(Struct, frozen=True):
    builtin: Mapping[str, bool]
    available: Availability
    isolate: bool | None


def _failed(ok: bool, why: str = "") -> str | None:
    return None if ok else why


# The checks every requested sender passes, in this order: (reason, the check: None if it
# passes, else why not, the message). The first check a sender fails refuses the run.
# Invariants: the first two need only the registry's facts, so a real MTA asked for without
# isolation is told about --isolate even on a machine where it is not installed (the fix the
# user needs first); availability, which may probe the machine, is asked last and only of a
# sender that passed the others.
_CHECKS: tuple[tuple[str, Callable[[_Facts, str], str | None],
                     Callable[[_Facts, str, str], str]], ...] = (
    (UNKNOWN, lambda f, name: _failed(name in f.builtin),
     lambda f, name, why: f"unknown sender {name!r} (known: {', '.join(f.builtin)})"),
    (NEEDS_ISOLATE, lambda f, name: _failed(f.builtin[name] or bool(f.isolate)),
     lambda f, name, why: (
         f"{name!r} is a real MTA: it runs only in a private network namespace "
         "(`downgrade-lab run --isolate`)" if f.isolate is None  # this command cannot isolate
         else f"sender {name!r} runs only with --isolate (a private network namespace with "
         "real ports and resolver)")),
    (UNAVAILABLE, lambda f, name: _failed(*f.available(name)),
     lambda f, name, why: f"sender {name!r} cannot run here: {why}"),
)


def choose_senders(requested: Sequence[str], builtin: Mapping[str, bool],
                   available: Availability, *, isolate: bool | None,
                   unavailable: Literal["refuse", "skip"] = "refuse") -> SenderChoice | Refusal:
    """The senders to run, or why not.

    `requested`: the names asked for, in order (repeats run once); empty: every built-in sender
    that is available. `builtin`: every known sender (in matrix order) -> built in.
    `isolate`: True with --isolate, False without, None where the command cannot isolate.
    `unavailable`: refuse a requested sender that cannot run here, or keep it and name it in
    `skip` (the pytest plugin skips its tests, as for any missing tool)."""
    if not requested:
        return SenderChoice(tuple(n for n, b in builtin.items() if b and available(n)[0]))
    facts = _Facts(builtin, available, isolate)
    names = tuple(dict.fromkeys(requested))
    skip: list[tuple[str, str]] = []
    for name in names:
        for reason, check, message in _CHECKS:
            why = check(facts, name)
            if why is None:
                continue
            if reason == UNAVAILABLE and unavailable == "skip":
                skip.append((name, why))
                break
            return Refusal(name, reason, message(facts, name, why))
    return SenderChoice(names, tuple(skip))
