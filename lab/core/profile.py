"""Declarative MTA profiles (DESIGN §5, issue 14): TOML in, a validated frozen `Profile` out.

A profile describes a daemon MTA in data: files written from templates, commands that prepare,
start and stop it, how a message is handed over, and which log lines say what it decided. The
runtime that acts on it is lab/senders/real/profile.py; this module only parses, checks and
fills templates. Every problem is a `ProfileError` naming the file and the key, like a scenario.

Templates: `{{name}}` is replaced by a fact of the lab (FACTS), a profile variable (`[vars]`)
or, where a message is at hand, a per-message value (MESSAGE_VALUES, OUTCOME_VALUES). An unknown
name is an error when the profile is read, not when it runs. In regular expressions the values
are inserted escaped, so a queue id or a Message-ID matches literally.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from msgspec import Struct

from ..errors import ProfileError

# The lab's facts, filled in at start (lab/senders/real/profile.py). Invariant: every name here
# is set by the runtime for every scenario.
FACTS = {
    "workdir": "the sender's private work folder (0711), removed when the scenario ends",
    "ca_file": "a world-readable copy of the lab CA bundle (PEM) inside workdir",
    "dns": "the lab DNS server's address (also in /etc/resolv.conf inside the namespace)",
    "dns_port": "the lab DNS server's port (53 in the isolated topology)",
    "domain": "the recipient domain of the scenario (example.test)",
    "hosts": "the lab's hosts as name=ip:port, comma-separated (LAB_HOSTS)",
    "helo": "the sender's own host name in the lab (sender.test)",
    "hostname": "this machine's host name (what daemons use by default)",
    "port": "a free TCP port on 127.0.0.1, chosen per scenario (for a submission listener)",
    "real": "the folder where `make real-setup` unpacks MTAs (DOWNGRADE_LAB_REAL_ROOT)",
    "profile_dir": "the folder holding the profile file",
}
# Per message, in submit.* and outcome.* templates.
MESSAGE_VALUES = {
    "sender": "the envelope sender", "recipient": "the envelope recipient",
    "message_file": "the message, written to a file in workdir", "message_id": "its Message-ID, without <>",
}
# After submission, in outcome.* templates: the queue id submission returned ("" without one),
# and `id`, the key the result lines are found by (outcome.key's `id` group, else the queue id,
# else the Message-ID).
OUTCOME_VALUES = {"queue_id": "what submit.queue_id captured", "id": "the message's key in the log"}
CAPABILITIES = frozenset({"mta-sts", "tls-rpt", "queue-state", "dane"})
STATES = ("delivered", "deferred", "bounced")  # outcome keys, in the order they are tried

TOP_KEYS = {"name", "summary", "capabilities", "vars", "requires", "files", "prepare", "start",
            "stop", "submit", "outcome", "between"}
REQUIRES_KEYS = {"programs", "files", "users", "how"}
FILE_KEYS = {"path", "text", "mode"}
RUN_KEYS = {"run", "timeout_s"}
BETWEEN_KEYS = RUN_KEYS | {"restart"}
START_KEYS = {"run", "daemon", "output", "ready_port", "ready_log", "timeout_s"}
SUBMIT_KEYS = {"via", "host", "port", "starttls", "user", "password", "command", "stdin",
               "queue_id", "timeout_s"}
OUTCOME_KEYS = {"log", "key", "delivered", "deferred", "bounced", "ignore", "queue", "context"}
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
VAR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_TIMEOUT_S = 600.0

Command = tuple[str, ...]  # argv words, each a template; no shell unless the profile runs one


class FileSpec(Struct, frozen=True):
    path: str  # relative to workdir
    text: str  # template
    mode: int = 0o644


class Steps(Struct, frozen=True):
    """Commands run in order; any failure fails the phase."""

    run: tuple[Command, ...] = ()
    timeout_s: float = 15.0
    restart: bool = False  # between steps only: stop and start the MTA again after `run`


class Start(Struct, frozen=True):
    run: Command
    daemon: bool = False  # the command forks and exits 0; else it stays in the foreground
    output: str = ""  # file in workdir that gets the command's stdout and stderr
    ready_port: str = ""  # template: a port on 127.0.0.1 that accepts once the MTA is ready
    ready_log: str = ""  # regex over outcome.log that says the MTA is ready
    timeout_s: float = 10.0


class Submit(Struct, frozen=True):
    via: Literal["smtp", "command"]
    host: str = "127.0.0.1"
    port: str = ""  # template
    starttls: bool = False
    user: str = ""
    password: str = ""
    command: Command = ()
    stdin: bool = True  # command: the message on stdin (else it reads {{message_file}})
    queue_id: str = ""  # regex with group `id` over the last reply / the command's output
    timeout_s: float = 10.0


class Outcome(Struct, frozen=True):
    log: str  # template: the log file, relative to workdir or absolute
    key: str = ""  # regex with group `id`, over the log: the message's key
    patterns: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (state, regexes), STATES order
    ignore: tuple[str, ...] = ()  # lines that look like a result but are not one
    queue: Command = ()  # lists the queue; its output goes with a deferral
    context: tuple[str, ...] = ()  # lines whose `fact` group (or whole line) joins the reason


class Requires(Struct, frozen=True):
    programs: tuple[str, ...] = ()  # templates: a path, or a name looked up on PATH
    files: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    how: str = ""  # how to get what is missing


class Profile(Struct, frozen=True):
    file: str
    name: str
    summary: str
    capabilities: frozenset[str]
    vars: tuple[tuple[str, str], ...]
    requires: Requires
    files: tuple[FileSpec, ...]
    prepare: Steps
    start: Start | None  # None: nothing runs between messages (submit.command does the work)
    stop: Steps
    submit: Submit
    outcome: Outcome
    between: Steps

    @property
    def folder(self) -> str:
        return str(Path(self.file).parent)


def fill(template: str, values: Mapping[str, str], *, regex: bool = False) -> str:
    """`template` with every `{{name}}` replaced (escaped for a regex when `regex`). A name
    missing from `values` is a KeyError: `load` has checked every template already."""
    def one(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        return re.escape(value) if regex else value
    return PLACEHOLDER.sub(one, template)


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


class _Ctx:
    def __init__(self, file: str) -> None:
        self.file = file
        self.known: set[str] = set(FACTS)

    def error(self, key: str, message: str) -> ProfileError:
        return ProfileError(self.file, key, message)

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {_show(value)}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.error(f"{key}.{unknown[0]}" if key else unknown[0],
                             f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, key: str, *, extra: Iterable[str] = (), empty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_show(value)}")
        if not empty and not value.strip():
            raise self.error(key, "must not be empty")
        unknown = sorted(placeholders(value) - self.known - set(extra))
        if unknown:
            allowed = sorted(self.known | set(extra))
            raise self.error(key, f"unknown placeholder {{{{{unknown[0]}}}}} (known: "
                             f"{', '.join(allowed)})")
        return value

    def regex(self, value: Any, key: str, *, extra: Iterable[str] = (),
              groups: Iterable[str] = ()) -> str:
        text = self.string(value, key, extra=extra, empty=False)
        try:
            compiled = re.compile(PLACEHOLDER.sub("x", text))
        except re.error as exc:
            raise self.error(key, f"bad regular expression {text!r}: {exc}") from None
        for group in groups:
            if group not in compiled.groupindex:
                raise self.error(key, f"needs a named group (?P<{group}>...): {text!r}")
        return text

    def regexes(self, value: Any, key: str, *, extra: Iterable[str] = ()) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.error(key, f"must be a regex or a non-empty list of them, got {_show(value)}")
        return tuple(self.regex(v, f"{key}[{i}]" if len(items) > 1 else key, extra=extra)
                     for i, v in enumerate(items))

    def command(self, value: Any, key: str, *, extra: Iterable[str] = ()) -> Command:
        """A command: a list of words, or one string split like a shell line (no shell runs it)."""
        if isinstance(value, str):
            try:
                words: list[Any] = shlex.split(value)
            except ValueError as exc:
                raise self.error(key, f"cannot split {value!r}: {exc}") from None
        elif isinstance(value, list):
            words = value
        else:
            raise self.error(key, f"must be a command (a string or a list of words), got {_show(value)}")
        if not words:
            raise self.error(key, "an empty command")
        return tuple(self.string(w, f"{key}[{i}]" if isinstance(value, list) else key, extra=extra)
                     for i, w in enumerate(words))

    def commands(self, value: Any, key: str) -> tuple[Command, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.error(key, f"must be a list of commands, got {_show(value)}")
        return tuple(self.command(v, f"{key}[{i}]") for i, v in enumerate(items))

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_show(value)}")
        return value

    def seconds(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT_S:
            raise self.error(key, f"must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got "
                             f"{_show(value)}")
        return float(value)

    def port(self, value: Any, key: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 < value < 65536:
                raise self.error(key, f"must be a TCP port (1-65535), got {value}")
            return str(value)
        return self.string(value, key, empty=False)

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings, got {_show(value)}")
        return tuple(self.string(v, f"{key}[{i}]", empty=False) for i, v in enumerate(value))


def _show(value: Any) -> str:
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if not isinstance(value, dict | list) else kind


def load(text: str, file: str) -> Profile:
    """Parse and check a profile. `file` names it in errors and anchors {{profile_dir}}."""
    ctx = _Ctx(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.error("", f"bad TOML: {exc}") from None
    top = ctx.table(data, "", TOP_KEYS)
    for key in ("name", "summary", "submit", "outcome"):
        if key not in top:
            raise ctx.error(key, "missing (a profile needs name, summary, submit, outcome)")
    name = ctx.string(top["name"], "name")
    if not NAME.match(name):
        raise ctx.error("name", f"{name!r} is not a sender name (lower-case letters, digits, "
                        "'-', '.', '_'; at most 40)")
    caps = set(ctx.strings(top.get("capabilities", []), "capabilities"))
    if caps - CAPABILITIES:
        raise ctx.error("capabilities", f"unknown {sorted(caps - CAPABILITIES)[0]!r} (allowed: "
                        f"{', '.join(sorted(CAPABILITIES))}; `clock` needs a Python sender)")
    variables = _vars(ctx, top.get("vars", {}))
    return Profile(
        file=file, name=name, summary=ctx.string(top["summary"], "summary", empty=False),
        capabilities=frozenset(caps), vars=variables,
        requires=_requires(ctx, top.get("requires", {})),
        files=_files(ctx, top.get("files", [])),
        prepare=_steps(ctx, top.get("prepare", {}), "prepare"),
        start=_start(ctx, top["start"]) if "start" in top else None,
        stop=_steps(ctx, top.get("stop", {}), "stop"),
        submit=_submit(ctx, top["submit"]),
        outcome=_outcome(ctx, top["outcome"]),
        between=_steps(ctx, top.get("between", {}), "between"),
    )


def _vars(ctx: _Ctx, value: Any) -> tuple[tuple[str, str], ...]:
    """`[vars]`: name -> template over the facts and the variables above it (in file order)."""
    table = ctx.table(value, "vars", set(value) if isinstance(value, dict) else set())
    out = []
    for name, template in table.items():
        if not VAR_NAME.match(name) or name in FACTS:
            raise ctx.error(f"vars.{name}", "a variable name is lower-case letters, digits and "
                            f"'_' and not one of the facts ({', '.join(FACTS)})")
        out.append((name, ctx.string(template, f"vars.{name}")))
        ctx.known.add(name)
    return tuple(out)


def _requires(ctx: _Ctx, value: Any) -> Requires:
    t = ctx.table(value, "requires", REQUIRES_KEYS)
    return Requires(programs=ctx.strings(t.get("programs", []), "requires.programs"),
                    files=ctx.strings(t.get("files", []), "requires.files"),
                    users=ctx.strings(t.get("users", []), "requires.users"),
                    how=ctx.string(t.get("how", ""), "requires.how"))


def _files(ctx: _Ctx, value: Any) -> tuple[FileSpec, ...]:
    if not isinstance(value, list):
        raise ctx.error("files", f"must be an array of tables ([[files]]), got {_show(value)}")
    out = []
    for i, item in enumerate(value):
        key = f"files[{i}]"
        t = ctx.table(item, key, FILE_KEYS)
        if "path" not in t or "text" not in t:
            raise ctx.error(key, "needs path and text")
        path = ctx.string(t["path"], f"{key}.path", empty=False)
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ctx.error(f"{key}.path", f"{path!r} must stay inside workdir (relative, no '..')")
        mode = t.get("mode", "0644")
        if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3,4}", mode):
            raise ctx.error(f"{key}.mode", f"must be an octal string like \"0644\", got {_show(mode)}")
        out.append(FileSpec(path, ctx.string(t["text"], f"{key}.text"), int(mode, 8)))
    return tuple(out)


def _steps(ctx: _Ctx, value: Any, key: str) -> Steps:
    t = ctx.table(value, key, BETWEEN_KEYS if key == "between" else RUN_KEYS)
    return Steps(run=ctx.commands(t.get("run", []), f"{key}.run"),
                 timeout_s=ctx.seconds(t.get("timeout_s", 15.0), f"{key}.timeout_s"),
                 restart=ctx.boolean(t.get("restart", False), f"{key}.restart"))


def _start(ctx: _Ctx, value: Any) -> Start:
    t = ctx.table(value, "start", START_KEYS)
    if "run" not in t:
        raise ctx.error("start.run", "missing: the command that starts the MTA")
    daemon = ctx.boolean(t.get("daemon", False), "start.daemon")
    port = ctx.port(t["ready_port"], "start.ready_port") if "ready_port" in t else ""
    log = ctx.regex(t["ready_log"], "start.ready_log") if "ready_log" in t else ""
    if daemon and not (port or log):
        raise ctx.error("start", "daemon = true needs ready_port or ready_log (how to tell it is up)")
    output = ctx.string(t.get("output", ""), "start.output")
    if output and (Path(output).is_absolute() or ".." in Path(output).parts):
        raise ctx.error("start.output", f"{output!r} must stay inside workdir (relative, no '..')")
    return Start(run=ctx.command(t["run"], "start.run"), daemon=daemon, output=output,
                 ready_port=port, ready_log=log,
                 timeout_s=ctx.seconds(t.get("timeout_s", 10.0), "start.timeout_s"))


def _submit(ctx: _Ctx, value: Any) -> Submit:
    t = ctx.table(value, "submit", SUBMIT_KEYS)
    via = t.get("via")
    if via not in ("smtp", "command"):
        raise ctx.error("submit.via", f"must be \"smtp\" or \"command\", got {_show(via)}")
    queue_id = (ctx.regex(t["queue_id"], "submit.queue_id", extra=MESSAGE_VALUES, groups=["id"])
                if "queue_id" in t else "")
    timeout = ctx.seconds(t.get("timeout_s", 10.0), "submit.timeout_s")
    smtp_keys = {"host", "port", "starttls", "user", "password"}
    if via == "smtp":
        if "command" in t or "stdin" in t:
            raise ctx.error("submit.command" if "command" in t else "submit.stdin",
                            "only with via = \"command\"")
        if "port" not in t:
            raise ctx.error("submit.port", "missing: where the MTA takes mail (e.g. \"{{port}}\")")
        if ("user" in t) != ("password" in t):
            raise ctx.error("submit.user" if "password" in t else "submit.password",
                            "AUTH needs both user and password")
        return Submit(via="smtp", host=ctx.string(t.get("host", "127.0.0.1"), "submit.host", empty=False),
                      port=ctx.port(t["port"], "submit.port"),
                      starttls=ctx.boolean(t.get("starttls", False), "submit.starttls"),
                      user=ctx.string(t.get("user", ""), "submit.user"),
                      password=ctx.string(t.get("password", ""), "submit.password"),
                      queue_id=queue_id, timeout_s=timeout)
    wrong = sorted(smtp_keys & set(t))
    if wrong:
        raise ctx.error(f"submit.{wrong[0]}", "only with via = \"smtp\"")
    if "command" not in t:
        raise ctx.error("submit.command", "missing: the command that takes the message")
    return Submit(via="command", command=ctx.command(t["command"], "submit.command", extra=MESSAGE_VALUES),
                  stdin=ctx.boolean(t.get("stdin", True), "submit.stdin"),
                  queue_id=queue_id, timeout_s=timeout)


def _outcome(ctx: _Ctx, value: Any) -> Outcome:
    t = ctx.table(value, "outcome", OUTCOME_KEYS)
    if "log" not in t:
        raise ctx.error("outcome.log", "missing: the log file the MTA writes its results to")
    keyed = {**MESSAGE_VALUES, "queue_id": ""}
    patterns = tuple((state, ctx.regexes(t[state], f"outcome.{state}",
                                         extra=[*MESSAGE_VALUES, *OUTCOME_VALUES]))
                     for state in STATES if state in t)
    if not patterns:
        raise ctx.error("outcome", "needs at least one of delivered, deferred, bounced")
    if "delivered" not in t:
        raise ctx.error("outcome.delivered", "missing: the line that says the message was delivered")
    # a context pattern may use the named groups of the result patterns, e.g. {{session}}
    groups = {g for _, pats in patterns for p in pats
              for g in re.compile(PLACEHOLDER.sub("x", p)).groupindex} - {"reason"}
    return Outcome(
        log=ctx.string(t["log"], "outcome.log", empty=False),
        key=(ctx.regex(t["key"], "outcome.key", extra=keyed, groups=["id"]) if "key" in t else ""),
        patterns=patterns,
        ignore=(ctx.regexes(t["ignore"], "outcome.ignore", extra=[*MESSAGE_VALUES, *OUTCOME_VALUES])
                if "ignore" in t else ()),
        queue=ctx.command(t["queue"], "outcome.queue") if "queue" in t else (),
        context=(ctx.regexes(t["context"], "outcome.context",
                             extra=[*MESSAGE_VALUES, *OUTCOME_VALUES, *groups])
                 if "context" in t else ()),
    )


# -- reading the log: pure, lines in, a decision out --------------------------------------------

class Result(Struct, frozen=True):
    state: str  # delivered | deferred | bounced
    reason: str  # the pattern's `reason` group, else the whole line
    line: str
    groups: tuple[tuple[str, str], ...] = ()  # the pattern's other named groups


def find_key(outcome: Outcome, lines: Iterable[str], values: Mapping[str, str]) -> str | None:
    """The message's key per outcome.key (its `id` group), or None while it is not logged."""
    pattern = re.compile(fill(outcome.key, values, regex=True))
    for line in lines:
        m = pattern.search(line)
        if m:
            return m.group("id")
    return None


def first_result(outcome: Outcome, lines: Iterable[str], values: Mapping[str, str]) -> Result | None:
    """The first line among `lines` that states the message's fate (patterns filled with
    `values`, which include `id`), skipping outcome.ignore lines; None while there is none."""
    ignore = [re.compile(fill(p, values, regex=True)) for p in outcome.ignore]
    compiled = [(state, re.compile(fill(p, values, regex=True)))
                for state, pats in outcome.patterns for p in pats]
    for line in lines:
        if any(p.search(line) for p in ignore):
            continue
        for state, pattern in compiled:
            m = pattern.search(line)
            if m:
                found = {k: v for k, v in m.groupdict().items() if v is not None}
                reason = found.pop("reason", "") or line.strip()
                return Result(state, reason, line, tuple(sorted(found.items())))
    return None


def context_facts(outcome: Outcome, lines: Iterable[str], values: Mapping[str, str]) -> list[str]:
    """What outcome.context finds about the message (its `fact` group, else the line), in log
    order; `values` include the result's named groups (a session id, say)."""
    try:
        patterns = [re.compile(fill(p, values, regex=True)) for p in outcome.context]
    except KeyError:  # a group the matching result pattern does not have
        return []
    facts = []
    for line in lines:
        for pattern in patterns:
            m = pattern.search(line)
            if m:
                facts.append((m.groupdict().get("fact") or line).strip())
                break
    return facts
