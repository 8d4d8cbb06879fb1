"""Progress of `downgrade-lab run`, always on stderr so stdout carries only the matrix (and a
pipe like `downgrade-lab run > matrix.txt` still shows progress on the terminal).

On a terminal: a rich progress bar with the running counts per verdict, gone when the run ends
(rich itself honours NO_COLOR). Elsewhere (CI logs, pipes, files): one plain line per finished
pair, `PASS  strip/enforce-warm [reference] (3/164)`, in the order pairs finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from ..core.verdict import VERDICTS
from .console import Environment


class Finished(Protocol):
    """A finished pair, as progress needs it (a PairRecord, or a worker's progress line)."""

    @property
    def verdict(self) -> str: ...
    @property
    def scenario(self) -> str: ...
    @property
    def sender(self) -> str: ...


Tick = Callable[[Finished], None]


@contextmanager
def progress(env: Environment, total: int) -> Iterator[Tick]:
    """A callback for `run_all(progress=...)`, drawing on `env.stderr` while the block runs."""
    counts = dict.fromkeys(VERDICTS, 0)
    if not env.stderr_is_terminal:
        def line(result: Finished) -> None:
            verdict = result.verdict
            counts[verdict] += 1
            done = sum(counts.values())
            env.stderr.write(f"{verdict:5} {result.scenario} [{result.sender}] ({done}/{total})\n")
            env.stderr.flush()

        yield line
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(file=env.stderr, force_terminal=True)
    with Progress(TextColumn("[bold]running"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("", total=total)

        def tick(result: Finished) -> None:
            counts[result.verdict] += 1
            bar.update(task, advance=1, description=describe(counts))

        yield tick


def describe(counts: dict[str, int]) -> str:
    """The running counts, non-zero verdicts only: `PASS 12  FAIL 3`."""
    return "  ".join(f"{v} {n}" for v, n in counts.items() if n)
