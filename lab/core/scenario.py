"""Scenario files (DESIGN §4): TOML in, validated frozen `Scenario` values out.

Pure: reads bytes it is given, never the network. Every problem is a `ScenarioError` naming the
file, the key and what is allowed; a user never sees a traceback for a bad scenario.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from msgspec.structs import replace

from ..errors import ScenarioError
from .model import (
    ATTACK_DEFAULTS,
    ATTACKS,
    BLOCK_HOWS,
    CERT_VARIANTS,
    DANE_DNS_ATTACKS,
    DNS_FAULTS,
    DS_STATES,
    MODES,
    OUTCOMES,
    TLSA_CERTS,
    Attack,
    DaneSpec,
    DnsSpec,
    MessageSpec,
    PolicySpec,
    ReceiverSpec,
    Scenario,
    Step,
    TlsaSpec,
    TxtRecord,
    World,
)
from .names import name_key
from .scenariofiles import locate, scenario_files
from .tlsrpt import RESULT_TYPES

# Allowed keys per table. Invariant: a key absent here is an error, never silently ignored.
TOP_KEYS = {"title", "summary", "rfc", "tags", "dns", "message", "policy", "receiver", "step",
            "deadline_s", "dane"}
DNS_KEYS = {"mx", "sts_txt", "tlsrpt_txt", "cname", "fault"}
MESSAGE_KEYS = {"to", "headers"}
POLICY_KEYS = {"mode", "mx", "max_age", "raw", "status", "content_type", "cert", "delay_s",
               "redirect", "pad_to", "trickle_s"}
MAX_PAD = 16 * 1024 * 1024
RECEIVER_KEYS = {"starttls", "cert"}
STEP_KEYS = {"attack", "expect", "tolerate", "because", "set", "after", "report", "deadline_s"}
SET_KEYS = {"dns", "policy", "receiver", "dane"}
DANE_KEYS = {"dnssec", "tlsa", "unsigned", "ds"}
TLSA_KEYS = {"usage", "selector", "mtype", "cert", "data"}
EVERY_MX = "*"  # `tlsa = [...]`: the same records for every MX host
ATTACK_KEYS = {"kind", "hosts", "cert", "how"}

HOSTNAME = re.compile(r"^(?=.{1,253}$)(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                      r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DEADLINE_S = 600.0


class _Ctx:
    """Where we are in the file, for error messages."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, key, message)

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            name = f"{key}.{unknown[0]}" if key else unknown[0]
            raise self.error(name, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_show(value)}")
        return value

    def choice(self, value: Any, key: str, allowed: Sequence[str]) -> str:
        text = self.string(value, key)
        if text not in allowed:
            raise self.error(key, f"{text!r} is not one of: {', '.join(allowed)}")
        return text

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings, got {_show(value)}")
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(value))

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_show(value)}")
        return value

    def integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, got {_show(value)}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo} to {hi})")
        return value

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {_show(value)}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo:g} to {hi:g})")
        return float(value)

    def hostname(self, value: Any, key: str) -> str:
        host = name_key(self.string(value, key))
        if not HOSTNAME.match(host):
            raise self.error(key, f"{value!r} is not a host name")
        return host

    def hostnames(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of host names, got {_show(value)}")
        return tuple(self.hostname(item, f"{key}[{i}]") for i, item in enumerate(value))


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, dict) else "a table"


def parse_duration(text: str | int | float) -> float:
    """'2d', '36h', '90m', '30s', '1w' or a number of seconds -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("negative")
        return float(text)
    m = DURATION.match(str(text))
    if not m:
        raise ValueError(str(text))
    return float(m.group(1)) * DURATION_UNITS[m.group(2)]


def _txt_records(ctx: _Ctx, value: Any, key: str) -> str | tuple[TxtRecord, ...]:
    if value == "auto":
        return "auto"
    if not isinstance(value, list):
        raise ctx.error(key, f"must be \"auto\" or a list of records, got {_show(value)}")
    records: list[TxtRecord] = []
    for i, rec in enumerate(value):
        k = f"{key}[{i}]"
        if isinstance(rec, str):
            records.append((rec,))
        elif isinstance(rec, list) and rec:
            records.append(ctx.strings(rec, k))
        else:
            raise ctx.error(k, "a record is a string or a non-empty list of strings")
    return tuple(records)


def _name_map(ctx: _Ctx, value: Any, key: str, allowed: Sequence[str] | None
              ) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ctx.error(key, f"must be a table of name = value, got {_show(value)}")
    out = []
    for name, target in value.items():
        host = ctx.hostname(name, f"{key}.{name}")
        k = f"{key}.{name}"
        out.append((host, ctx.choice(target, k, allowed) if allowed else ctx.hostname(target, k)))
    return tuple(out)


def _dns(ctx: _Ctx, raw: Any, base: DnsSpec, key: str) -> DnsSpec:
    t = ctx.table(raw, key, DNS_KEYS)
    spec = base
    if "mx" in t:
        mx = ctx.hostnames(t["mx"], f"{key}.mx")
        if not mx:
            raise ctx.error(f"{key}.mx", "needs at least one MX host (the lab's receiver "
                            "listens as each)")
        if any(h.startswith("*.") for h in mx):
            raise ctx.error(f"{key}.mx", "an MX host cannot be a wildcard")
        spec = replace(spec, mx=mx)
    if "sts_txt" in t:
        spec = replace(spec, sts_txt=_txt_records(ctx, t["sts_txt"], f"{key}.sts_txt"))
    if "tlsrpt_txt" in t:
        spec = replace(spec, tlsrpt_txt=_txt_records(ctx, t["tlsrpt_txt"], f"{key}.tlsrpt_txt"))
    if "cname" in t:
        spec = replace(spec, cname=_name_map(ctx, t["cname"], f"{key}.cname", None))
    if "fault" in t:
        spec = replace(spec, fault=_name_map(ctx, t["fault"], f"{key}.fault", DNS_FAULTS))
    return spec


def _policy_mx(ctx: _Ctx, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ctx.error(key, f"must be a list of MX patterns, got {_show(value)}")
    # Patterns are served as written (malformed ones are a legitimate test), so only the type
    # is checked here.
    return ctx.strings(value, key)


def _policy_redirect(ctx: _Ctx, value: Any, key: str) -> str:
    path = ctx.string(value, key)
    if not path.startswith("/") or path == "/.well-known/mta-sts.txt":
        raise ctx.error(key, f"{path!r} must be another absolute path, e.g. \"/moved.txt\"")
    return path


# How each [policy] key is read: key -> (ctx, value, its full key) -> the value of the
# `PolicySpec` field of the same name. Invariants: the keys are exactly POLICY_KEYS; a problem
# is a ScenarioError naming the key; keys are checked in this order, so the first bad key
# named is always the same one.
_POLICY_READERS: dict[str, Callable[[_Ctx, Any, str], Any]] = {
    "mode": lambda ctx, v, k: ctx.choice(v, k, MODES),
    "mx": _policy_mx,
    "max_age": lambda ctx, v, k: ctx.integer(v, k, 0, 9_999_999_999),
    "raw": lambda ctx, v, k: ctx.string(v, k),
    "status": lambda ctx, v, k: ctx.integer(v, k, 100, 599),
    "content_type": lambda ctx, v, k: ctx.string(v, k),
    "cert": lambda ctx, v, k: ctx.choice(v, k, CERT_VARIANTS),
    "delay_s": lambda ctx, v, k: ctx.number(v, k, 0, MAX_DEADLINE_S),
    "pad_to": lambda ctx, v, k: ctx.integer(v, k, 0, MAX_PAD),
    "trickle_s": lambda ctx, v, k: ctx.number(v, k, 0, MAX_DEADLINE_S),
    "redirect": _policy_redirect,
}


def _policy(ctx: _Ctx, raw: Any, base: PolicySpec, key: str) -> PolicySpec:
    t = ctx.table(raw, key, POLICY_KEYS)
    return replace(base, **{name: read(ctx, t[name], f"{key}.{name}")
                            for name, read in _POLICY_READERS.items() if name in t})


def _receiver(ctx: _Ctx, raw: Any, base: ReceiverSpec, key: str) -> ReceiverSpec:
    t = ctx.table(raw, key, RECEIVER_KEYS)
    spec = base
    if "starttls" in t:
        spec = replace(spec, starttls=ctx.boolean(t["starttls"], f"{key}.starttls"))
    if "cert" in t:
        spec = replace(spec, cert=ctx.choice(t["cert"], f"{key}.cert", CERT_VARIANTS))
    return spec


def _tlsa_list(ctx: _Ctx, value: Any, key: str) -> tuple[TlsaSpec, ...]:
    if not isinstance(value, list):
        raise ctx.error(key, f"must be a list of TLSA tables, got {_show(value)}")
    out = []
    for i, raw in enumerate(value):
        k = f"{key}[{i}]"
        t = ctx.table(raw, k, TLSA_KEYS)
        data = None
        if "data" in t:
            data = ctx.string(t["data"], f"{k}.data").lower()
            if not re.fullmatch(r"([0-9a-f]{2})*", data):
                raise ctx.error(f"{k}.data", f"{data!r} is not hex")
        out.append(TlsaSpec(
            usage=ctx.integer(t.get("usage", 3), f"{k}.usage", 0, 255),
            selector=ctx.integer(t.get("selector", 1), f"{k}.selector", 0, 255),
            mtype=ctx.integer(t.get("mtype", 1), f"{k}.mtype", 0, 255),
            cert=ctx.choice(t.get("cert", "genuine"), f"{k}.cert", TLSA_CERTS), data=data))
    return tuple(out)


def _dane(ctx: _Ctx, raw: Any, base: DaneSpec, key: str, mx: Sequence[str]) -> DaneSpec:
    """`[dane]` (DESIGN §9): `tlsa` is a list (every MX host) or a table MX host -> list."""
    t = ctx.table(raw, key, DANE_KEYS)
    changes: dict[str, Any] = {}
    if "dnssec" in t:
        changes["dnssec"] = ctx.boolean(t["dnssec"], f"{key}.dnssec")
    if "ds" in t:
        changes["ds"] = ctx.choice(t["ds"], f"{key}.ds", DS_STATES)
    if "unsigned" in t:
        changes["unsigned"] = ctx.hostnames(t["unsigned"], f"{key}.unsigned")
    if "tlsa" in t:
        value = t["tlsa"]
        if isinstance(value, dict):
            per_host = []
            for host, records in value.items():
                name = ctx.hostname(host, f"{key}.tlsa.{host}")
                if name not in mx:
                    raise ctx.error(f"{key}.tlsa.{host}", f"{host!r} is not an MX host "
                                    f"(dns.mx: {', '.join(mx)})")
                per_host.append((name, _tlsa_list(ctx, records, f"{key}.tlsa.{host}")))
            changes["tlsa"] = tuple(per_host)
        else:
            changes["tlsa"] = ((EVERY_MX, _tlsa_list(ctx, value, f"{key}.tlsa")),)
    return replace(base, **changes)


def _check_dane_names(ctx: _Ctx, world: World, key: str) -> None:
    if world.dane is None:
        return
    for name in (world.domain, *world.dns.mx):
        if not name.endswith(".test"):
            raise ctx.error(key, f"{name!r}: a scenario with [dane] keeps its names below "
                            "test., the lab's signed root")


def _message(ctx: _Ctx, raw: Any) -> MessageSpec:
    t = ctx.table(raw, "message", MESSAGE_KEYS)
    spec = MessageSpec()
    if "to" in t:
        to = ctx.string(t["to"], "message.to")
        local, at, domain = to.rpartition("@")
        if not at or not local or not HOSTNAME.match(domain.lower()) or domain.startswith("*"):
            raise ctx.error("message.to", f"{to!r} is not an address like bob@example.test")
        spec = replace(spec, to=to)
    if "headers" in t:
        h = t["headers"]
        if not isinstance(h, dict):
            raise ctx.error("message.headers", f"must be a table of header = value, got {_show(h)}")
        pairs = tuple((str(k), ctx.string(v, f"message.headers.{k}")) for k, v in h.items())
        for name, value in pairs:
            if not re.fullmatch(r"[!-9;-~]+", name) or "\n" in value or "\r" in value:
                raise ctx.error(f"message.headers.{name}", "not a valid header name/value")
        spec = replace(spec, headers=pairs)
    return spec


def _attack(ctx: _Ctx, raw: Any, key: str, mx: Iterable[str]) -> Attack:
    if isinstance(raw, str):
        raw = {"kind": raw}
    t = ctx.table(raw, key, ATTACK_KEYS)
    if "kind" not in t:
        raise ctx.error(f"{key}.kind", "missing (every attack table needs a kind)")
    kind = ctx.choice(t["kind"], f"{key}.kind", sorted(ATTACKS))
    allowed = ATTACKS[kind][1]
    for k in sorted(set(t) - {"kind"} - allowed):
        raise ctx.error(f"{key}.{k}", f"{kind} takes no {k!r} "
                        f"(it takes: {', '.join(sorted(allowed)) or 'nothing but kind'})")
    defaults = ATTACK_DEFAULTS.get(kind, {})
    hosts = None
    if "hosts" in t:
        hosts = ctx.hostnames(t["hosts"], f"{key}.hosts")
        known = set(mx)
        for h in hosts:
            if h.startswith("*."):  # an attack sits on real connections, to named hosts
                raise ctx.error(f"{key}.hosts", f"{h!r}: name MX hosts, not patterns")
            if h not in known:
                raise ctx.error(f"{key}.hosts", f"{h!r} is not an MX host of this step "
                                f"(dns.mx: {', '.join(sorted(known))})")
    cert = ctx.choice(t["cert"], f"{key}.cert", CERT_VARIANTS) if "cert" in t else defaults.get("cert")
    how = ctx.choice(t["how"], f"{key}.how", BLOCK_HOWS) if "how" in t else defaults.get("how")
    return Attack(kind=kind, hosts=hosts, cert=cert, how=how)


def _outcomes(ctx: _Ctx, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ctx.error(key, f"must be a list of outcomes, got {_show(value)}")
    return tuple(ctx.choice(v, f"{key}[{i}]", OUTCOMES) for i, v in enumerate(value))


def _report(ctx: _Ctx, value: Any, key: str) -> tuple[str, ...] | Literal[False]:
    """`report = [...]`: RFC 8460 §4.3 result types the step's report must carry ([] = success
    only); `report = false`: no report may arrive (no usable TLS-RPT record, R-01)."""
    if value is False:
        return False
    if not isinstance(value, list):
        raise ctx.error(key, f"must be a list of TLS-RPT result types or false, got {_show(value)}")
    types = tuple(ctx.choice(v, f"{key}[{i}]", RESULT_TYPES) for i, v in enumerate(value))
    if len(set(types)) != len(types):
        raise ctx.error(key, "names a result type twice")
    return types


def parse_scenario(data: Mapping[str, Any], *, file: str, scenario_id: str) -> Scenario:
    """Validate a decoded TOML document and build the `Scenario` with each step's world."""
    ctx = _Ctx(file)
    top = ctx.table(dict(data), "", TOP_KEYS)
    if "title" not in top:
        raise ctx.error("title", "missing (every scenario needs a title)")
    title = ctx.string(top["title"], "title")
    summary = ctx.string(top.get("summary", ""), "summary")
    rfc = ctx.strings(top.get("rfc", []), "rfc")
    for i, rid in enumerate(rfc):
        if not re.fullmatch(r"[A-Z]-\d\d", rid):
            raise ctx.error(f"rfc[{i}]", f"{rid!r} is not a CONFORMANCE.md id like \"A-01\"")
    tags = ctx.strings(top.get("tags", []), "tags")
    default_deadline = ctx.number(top.get("deadline_s", 10.0), "deadline_s", 0.1, MAX_DEADLINE_S)

    message = _message(ctx, top.get("message", {}))
    domain = message.domain
    dns = _dns(ctx, top.get("dns", {}), DnsSpec(mx=(f"mx1.{domain}",)), "dns")
    policy: PolicySpec | None = None
    if "policy" in top:
        policy = _policy(ctx, top["policy"], PolicySpec(mx=dns.mx), "policy")
    receiver = _receiver(ctx, top.get("receiver", {}), ReceiverSpec(), "receiver")

    raw_steps = top.get("step")
    if raw_steps is None:
        raise ctx.error("step", "missing: a scenario needs at least one [[step]]")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ctx.error("step", "must be one or more [[step]] tables")
    dane = _dane(ctx, top["dane"], DaneSpec(), "dane", dns.mx) if "dane" in top else None
    world = World(domain=domain, dns=dns, policy=policy, receiver=receiver, message=message,
                  dane=dane)
    _check_dane_names(ctx, world, "dane")
    steps = []
    for i, raw in enumerate(raw_steps):
        key = f"step[{i}]"
        t = _hoist_step_keys(ctx, ctx.table(raw, key, STEP_KEYS), key)
        if "set" in t:
            world = _apply_set(ctx, t["set"], world, f"{key}.set")
        if "expect" not in t:
            raise ctx.error(f"{key}.expect", f"missing (one of: {', '.join(OUTCOMES)})")
        expect = ctx.choice(t["expect"], f"{key}.expect", OUTCOMES)
        attacks_raw = t.get("attack", [])
        if not isinstance(attacks_raw, list):
            attacks_raw = [attacks_raw]
        # Only the step's MX hosts have connections to attack: a name only the policy lists
        # would be an attack that silently does nothing.
        attacks = tuple(_attack(ctx, a, f"{key}.attack[{j}]", world.dns.mx)
                        for j, a in enumerate(attacks_raw))
        for j, a in enumerate(attacks):
            if a.kind in DANE_DNS_ATTACKS and world.dane is None:
                raise ctx.error(f"{key}.attack[{j}]", f"{a.kind} attacks signed DNS: the "
                                "scenario needs a [dane] table")
        tolerate = _outcomes(ctx, t.get("tolerate", []), f"{key}.tolerate")
        if expect in tolerate:
            raise ctx.error(f"{key}.tolerate", f"{expect!r} is already the expected outcome")
        after_s = 0.0
        if "after" in t:
            try:
                after_s = parse_duration(t["after"])
            except (ValueError, TypeError):
                raise ctx.error(f"{key}.after", f"{t['after']!r} is not a duration like \"2d\", "
                                "\"36h\", \"90m\", \"30s\" or a number of seconds") from None
            if i == 0:
                raise ctx.error(f"{key}.after", "the first step has no earlier step to wait after")
        report = _report(ctx, t["report"], f"{key}.report") if "report" in t else None
        steps.append(Step(
            index=i, world=world, attack=attacks, expect=expect, tolerate=tolerate,
            because=ctx.string(t.get("because", ""), f"{key}.because"), after_s=after_s,
            report=report,
            deadline_s=ctx.number(t.get("deadline_s", default_deadline), f"{key}.deadline_s",
                                  0.1, MAX_DEADLINE_S),
        ))
    return Scenario(id=scenario_id, path=file, title=title, summary=summary, rfc=rfc, tags=tags,
                    steps=tuple(steps))


def _hoist_step_keys(ctx: _Ctx, t: dict[str, Any], key: str) -> dict[str, Any]:
    """DESIGN §4's listing shows `after` and `report` below `[step.set]`, where TOML puts them
    inside `set`. A step key there is unambiguous (`set` changes only dns/policy/receiver), so
    it is read as the step's own; named in both places, it is an error."""
    raw_set = t.get("set")
    if not isinstance(raw_set, dict):
        return t
    moved = {k: v for k, v in raw_set.items() if k in STEP_KEYS - {"set"}}
    for k in moved:
        if k in t:
            raise ctx.error(f"{key}.set.{k}", f"{k!r} is given for the step already")
    if not moved:
        return t
    rest = {k: v for k, v in raw_set.items() if k not in moved}
    return {**{k: v for k, v in t.items() if k != "set"}, **moved,
            **({"set": rest} if rest else {})}


def _apply_set(ctx: _Ctx, raw: Any, world: World, key: str) -> World:
    """`[step.set]` changes persist: each step sees every earlier step's changes."""
    t = ctx.table(raw, key, SET_KEYS)
    if "dns" in t:
        world = replace(world, dns=_dns(ctx, t["dns"], world.dns, f"{key}.dns"))
    if "policy" in t:
        if t["policy"] is False:
            world = replace(world, policy=None)  # the domain withdraws its policy
        else:
            base = world.policy or PolicySpec(mx=world.dns.mx)
            world = replace(world, policy=_policy(ctx, t["policy"], base, f"{key}.policy"))
    if "receiver" in t:
        world = replace(world, receiver=_receiver(ctx, t["receiver"], world.receiver,
                                                  f"{key}.receiver"))
    if "dane" in t:
        world = replace(world, dane=_dane(ctx, t["dane"], world.dane or DaneSpec(),
                                          f"{key}.dane", world.dns.mx))
        _check_dane_names(ctx, world, f"{key}.dane")
    return world


def load_scenario(path: Path, scenario_id: str | None = None) -> Scenario:
    """Read and validate one scenario file."""
    file = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a leading byte-order mark is not TOML
    except OSError as exc:
        raise ScenarioError(file, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(file, "", "not UTF-8 text") from None
    return scenario_from_text(text, file=file, scenario_id=scenario_id or path.stem)


def scenario_from_text(text: str, *, file: str, scenario_id: str) -> Scenario:
    """Parse and validate scenario TOML text (a file's, or one built in: demo acts, `up`'s
    default, test fixtures); every problem is a ScenarioError naming `file` and the key."""
    try:
        data = tomllib.loads(text)
        return parse_scenario(data, file=file, scenario_id=scenario_id)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(file, "", f"bad TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ScenarioError(file, "", "nested too deeply") from None


def discover(paths: Sequence[str | Path]) -> list[Scenario]:
    """Scenarios from files and folders (recursive), in the order given, each file once.

    A scenario's id is its path without `.toml` below the folder given, or its stem for a file
    given alone. With several paths, ids are relative to the folder holding them all, so two
    files never share an id: `scenarios/parse scenarios/tlsrpt` gives `parse/missing-version`
    and `tlsrpt/missing-version`. The bundled catalogue's ids (`builtin`, `builtin/strip`) are
    relative to its root, as the checkout's `scenarios/` folder gives them: `strip/...`."""
    located = [locate(given) for given in paths]
    found = [(where, anchor, scenario_files(where)) for where, anchor in located]
    anchors = [os.path.abspath(g if g.is_dir() else g.parent) for g, fixed, _ in found
               if fixed is None]
    base = os.path.commonpath(anchors) if anchors else ""
    scenarios: list[Scenario] = []
    ids: dict[str, str] = {}  # id -> the file that has it
    seen: set[str] = set()
    for _, fixed, files in found:
        for f in files:
            real = os.path.realpath(f)
            if real in seen:
                continue  # the same file named twice (a folder and a file in it)
            seen.add(real)
            rel = os.path.relpath(os.path.abspath(f), base if fixed is None else fixed)
            sid = Path(rel).with_suffix("").as_posix()
            if sid in ids:
                raise ScenarioError(str(f), "", f"has the same id {sid!r} as {ids[sid]}")
            ids[sid] = str(f)
            scenarios.append(load_scenario(f, sid))
    return scenarios
