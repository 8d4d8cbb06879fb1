"""pytest plugin (entry point pytest11): scenarios as test items, and fixtures (DESIGN §8).

`pytest --lab-scenarios PATH [--lab-sender NAME]...` collects one item per scenario x sender,
each running the pair through `lab.runner.run_pair` in its own event loop. FAIL and ERROR fail
the item with the one-line reason; SKIP skips it; WEAK passes with the reason attached.

This module is loaded into every pytest run of any environment where the lab is installed,
including the project's own: without `--lab-scenarios` it must cost nothing and change nothing,
so it imports only pytest and the standard library at the top; the lab is imported lazily.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import signal
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .pytest_fixtures import lab_pki, lab_scenario, make_lab

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from ..core.model import Scenario
    from ..core.record import PairRecord, StepRecord
    from ..core.recordparts import TranscriptEntry
    from ..core.senderchoice import SenderChoice
    from ..harness.pki import PKI

__all__ = ["LabItem", "lab_pki", "lab_scenario", "make_lab"]

_PKI = pytest.StashKey["PKI"]()
_ASYNC_PLUGIN = "downgrade_lab_async"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("downgrade-lab", "Downgrade Lab (MTA-STS conformance)")
    group.addoption("--lab-scenarios", action="append", default=[], metavar="PATH",
                    help="collect one test per scenario (file or folder, repeat; `builtin` or "
                         "`builtin/FOLDER`: the bundled catalogue) and sender; without "
                         "positional paths, only these tests are collected")
    group.addoption("--lab-sender", action="append", default=[], metavar="NAME",
                    help="sender under test (repeat; default: every built-in sender)")
    group.addoption("--lab-json", metavar="FILE", default=None,
                    help="write the run record of the scenario tests (DESIGN §6) as JSON")


@pytest.hookimpl(tryfirst=True)  # before pytest-asyncio's own pytest_configure reads it
def pytest_configure(config: pytest.Config) -> None:
    _default_loop_scope(config)
    # The `lab` fixture is async: registered only where pytest-asyncio runs it (in strict mode
    # too, through pytest_asyncio.fixture). Importing pytest_asyncio here, after its own plugin
    # loaded, keeps pytest's assertion rewriting from warning about an early import.
    if config.pluginmanager.hasplugin("asyncio") and not config.pluginmanager.has_plugin(_ASYNC_PLUGIN):
        from . import pytest_async

        config.pluginmanager.register(pytest_async, _ASYNC_PLUGIN)
    if not config.getoption("lab_scenarios"):
        return
    _check_senders(config)
    _stop_on_sigterm()
    out = config.getoption("lab_json")
    if out and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_RecordWriter(_output(Path(out))), "downgrade_lab_json")
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        # `pytest --lab-scenarios scenarios` means "run the scenarios", not "and the whole
        # testpaths suite too"; name paths (`pytest tests --lab-scenarios ...`) to get both.
        config.args = []


_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


def _default_loop_scope(config: pytest.Config) -> None:
    """pytest-asyncio warns in every run where `asyncio_default_fixture_loop_scope` is unset,
    and installing the lab installs pytest-asyncio. Unset, the plugin sets it to `function`:
    what the `lab` fixture (function-scoped) needs, and what pytest-asyncio's docs recommend.
    A value of the project's own (ini, `-o`) is left alone. `_inicache` is pytest's; if it
    moves, the warning names the option to set."""
    if not config.pluginmanager.hasplugin("asyncio"):
        return
    try:
        if config.getini(_LOOP_SCOPE) is not None:
            return
    except ValueError:  # a pytest-asyncio without the option: nothing to set
        return
    cache = getattr(config, "_inicache", None)
    if isinstance(cache, dict):
        cache[_LOOP_SCOPE] = "function"


def _output(path: Path) -> Path:
    """--lab-json FILE, checked before any test runs (a bad path must not cost the run)."""
    from .outputs import OutputError, prepare

    try:
        prepare(path)
    except OutputError as exc:
        raise pytest.UsageError(f"--lab-json: {exc}") from None
    return path


def _stop_on_sigterm() -> None:
    """SIGTERM (a CI job cancelled) stops the session as Ctrl-C does, so fixtures tear down,
    labs stop and the lab PKI's private keys are removed; only if nobody else handles it."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _check_senders(config: pytest.Config) -> None:
    """Usage errors before collection, the same with or without xdist (whose workers would
    turn them into collection errors and exit 1)."""
    from ..core.scenariofiles import locate
    from ..errors import ScenarioError

    for path in config.getoption("lab_scenarios"):
        try:
            where, _ = locate(path)
        except ScenarioError as exc:
            raise pytest.UsageError(f"--lab-scenarios {exc}") from None
        if not where.exists():
            raise pytest.UsageError(f"--lab-scenarios {path}: no such file or folder")
    _senders(config)


def _senders(config: pytest.Config) -> SenderChoice:
    """The senders every scenario runs against; one that cannot run here has its tests skipped."""
    from ..core.senderchoice import Refusal
    from ..errors import LabError
    from ..senders.registry import choose

    try:
        choice = choose(config.getoption("lab_sender"), isolate=None, unavailable="skip")
    except LabError as exc:  # a class that does not import, a broken profile: one line
        raise pytest.UsageError(f"--lab-sender: {exc}") from None
    if isinstance(choice, Refusal):
        raise pytest.UsageError(f"--lab-sender: {choice.message}")
    return choice


@pytest.hookimpl(tryfirst=True)  # before the `-k`/`-m` deselection sees the list
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    paths: list[str] = config.getoption("lab_scenarios")
    if not paths:
        return
    senders = _senders(config)
    seen: set[str] = set()  # a scenario file named twice (a folder and a file in it) runs once
    from ..core.scenariofiles import is_builtin, locate

    for path in dict.fromkeys(paths):
        where = locate(path)[0].resolve()
        # the bundled catalogue is named as typed (`builtin/strip::strip/...[reference]`), not
        # by its place in site-packages
        rel = path.strip("/") if is_builtin(path) else Path(
            os.path.relpath(where, config.rootpath)).as_posix()
        root = LabScenarios.from_parent(session, name=rel, nodeid=rel, path=where,
                                        given=path, senders=senders, seen=seen)
        # genitems reports the collection (and a bad scenario as a collection error) like any
        # other collector's, so `collected N items` and `-k` see these items.
        items.extend(session.genitems(root))
    for index, item in enumerate(i for i in items if isinstance(i, LabItem)):
        item.index = index  # --lab-json keeps collection order, as `downgrade-lab run` does


class LabScenarios(pytest.Collector):
    """The scenarios under one `--lab-scenarios` path, times the senders. Item ids are
    `<path>::<scenario id>[<sender>]`: the path part keeps pytest's cwd-relative display and
    JUnit's classname right, the name is the id `downgrade-lab run` shows."""

    def __init__(self, *, given: str, senders: SenderChoice, seen: set[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.given = given  # as typed: scenario files are named that way in failures
        self.senders = senders
        self.seen = seen

    def collect(self) -> Iterator[LabItem]:
        from ..core.scenario import discover
        from ..errors import LabError

        try:
            scenarios = discover([self.given])
        except LabError as exc:
            raise self.CollectError(f"bad scenario: {exc}") from None
        unavailable = dict(self.senders.skip)
        for scenario in scenarios:
            # one file reached twice runs once; two files with one id (from different
            # --lab-scenarios folders) are two tests: their node ids differ by the folder
            key = os.path.realpath(scenario.path)
            if key in self.seen:
                continue
            self.seen.add(key)
            for sender in self.senders.run:
                name = f"{scenario.id}[{sender}]"
                item = LabItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}",
                                           path=Path(scenario.path).resolve(),
                                           scenario=scenario, sender=sender,
                                           unavailable=unavailable.get(sender))
                # `-k` matches the title, tags and conformance ids too, as `downgrade-lab run
                # -k` does, so one expression selects the same scenarios in both
                item.extra_keyword_matches.update((scenario.title, *scenario.tags, *scenario.rfc))
                yield item


class LabVerdict(Exception):
    """A FAIL or ERROR verdict: `repr_failure` turns it into the reason and the step table."""

    def __init__(self, result: PairRecord) -> None:
        super().__init__(result.reason)
        self.result = result


class LabItem(pytest.Item):
    """One scenario against one sender. After it ran, `result` holds the `PairRecord` and
    `user_properties` the verdict, the outcome and the reason (so `--junitxml` carries them)."""

    def __init__(self, *, scenario: Scenario, sender: str, unavailable: str | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.sender = sender
        self.unavailable = unavailable
        self.result: PairRecord | None = None
        self.index = 0

    def runtest(self) -> None:
        from ..harness.runner import run_pair
        from .report.terminal import cell_outcome

        if self.unavailable is not None:
            pytest.skip(f"sender {self.sender!r} cannot run here: {self.unavailable}")
        result = self.result = asyncio.run(run_pair(self.scenario, self.sender, _pki(self.config)))
        verdict, reason = result.verdict, result.reason
        self.user_properties += [("verdict", verdict), ("outcome", cell_outcome(result)),
                                 ("reason", reason), ("duration_s", result.duration_s)]
        if verdict in ("FAIL", "ERROR"):
            raise LabVerdict(result)
        if verdict == "SKIP":
            pytest.skip(reason)
        if verdict == "WEAK":
            self.add_report_section("call", "lab verdict", f"WEAK: {reason}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | TerminalRepr:
        if not isinstance(excinfo.value, LabVerdict):
            return super().repr_failure(excinfo, style=style)
        result = excinfo.value.result
        text = failure_text(result)
        return _as_crash_repr(self.scenario.path, f"{result.verdict}: {result.reason}", text)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def _as_crash_repr(path: str, message: str, text: str) -> str | TerminalRepr:
    """The failure text as pytest's own exception repr, so the one-line reason is the crash
    message (short summary, JUnit `message`) and pytest-xdist can ship it between processes.
    Those classes are pytest's private API: fall back to plain text if they move."""
    try:
        from _pytest._code.code import ReprExceptionInfo, ReprFileLocation, ReprTracebackNative
    except ImportError:  # pragma: no cover - a future pytest
        return text
    crash = ReprFileLocation(path, 0, message)
    return ReprExceptionInfo(reprtraceback=ReprTracebackNative([text]), reprcrash=crash)


def failure_text(result: PairRecord) -> str:
    """The reason, then one row per step: attack, expectation, outcome, verdict, and what the
    attacker saw; then the sender's own word on each step and the attacker's changes."""
    steps = result.steps
    lines = [f"{result.verdict} {result.scenario} x {result.sender}: {result.reason}",
             f"  {result.title} ({result.file})", ""]
    header = ("step", "attack", "expect", "outcome", "verdict", "attacker saw")
    rows = [header] + [(str(i + 1), _attacks(s), s.expect, s.outcome, s.verdict, _saw(s))
                       for i, s in enumerate(steps)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    for i, s in enumerate(steps):
        report = s.sender_report
        lines.append(f"  step {i + 1} sender: {report.state}: {report.detail}".rstrip())
        lines += [f"    {change}" for entry in s.transcript if entry.changed
                  for change in _changes(entry)]
    if not steps:
        lines.append("  (no step ran)")
    return "\n".join(lines) + "\n"


def _attacks(step: StepRecord) -> str:
    return ",".join(a.kind or "?" for a in step.attack) or "-"


def _saw(step: StepRecord) -> str:
    seen = [what for saw, what in ((step.attacker_saw_mail_from, "MAIL FROM"),
                                   (step.attacker_saw_body, "body")) if saw]
    return ", ".join(seen) or "-"


def _changes(entry: TranscriptEntry) -> list[str]:
    """What the attacker did to one transcript entry, line by line."""
    who = entry.attack or "attacker"
    to = "receiver" if entry.direction.endswith("receiver") else "sender"
    said, heard = entry.said, entry.heard
    if entry.origin == "attacker":
        return [f"{who}: the attacker answered {said!r} itself"]
    if heard is None:
        return [f"{who}: {said!r} never reached the {to}"]
    diff = difflib.ndiff(said.splitlines(), heard.splitlines())
    return [f"{who}: {'deleted' if d[0] == '-' else 'added'} {d[2:]!r}"
            for d in diff if d[:1] in "-+"]


def _pki(config: pytest.Config) -> PKI:
    """One lab CA per pytest process, shared by every item (as `downgrade-lab run` does)."""
    pki = config.stash.get(_PKI, None)
    if pki is None:
        from ..harness.pki import PKI

        pki = config.stash[_PKI] = PKI()
    return pki


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if isinstance(item, LabItem) and call.when == "call" and item.result is not None:
        # An extra report attribute survives pytest-xdist's report serialisation, so the
        # controller can write --lab-json from what the workers ran.
        report.lab_record = item.result.to_json()  # type: ignore[attr-defined]
        report.lab_index = item.index  # type: ignore[attr-defined]
    return report


class _RecordWriter:
    """`--lab-json FILE`: the scenario items' run records as one run record (DESIGN §6).
    Registered on the controller only: xdist workers send their reports to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: list[tuple[int, dict[str, Any]]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "lab_record", None)
        if record is not None and report.when == "call":
            self.results.append((getattr(report, "lab_index", 0), record))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from ..core.record import PairRecord
        from ..harness.runner import run_record

        results = [PairRecord.from_json(record) for _, record in sorted(self.results,
                                                                        key=lambda r: r[0])]
        record = run_record(results, sum(r.duration_s for r in results))
        try:
            self.path.write_text(record.to_text())
        except OSError as exc:  # /dev/full, a disk gone read-only: say so, keep the summary
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            line = f"downgrade-lab: cannot write --lab-json {self.path}: {exc.strerror or exc}"
            if reporter is not None:
                reporter.write_line(line, red=True)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_unconfigure(config: pytest.Config) -> None:
    pki = config.stash.get(_PKI, None)
    if pki is not None:
        pki.close()
