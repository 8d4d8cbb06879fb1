"""The senders the lab knows, and whether each can run here (`downgrade-lab senders`).

Four doors (DESIGN §5, issue 14), one lookup (`resolve`):
  - the lab's own adapters (SENDERS, below);
  - profiles shipped with the package (lab/senders/profiles/*.toml), by their `name`;
  - entry points of other packages in the group `downgrade_lab.senders` (name -> module:Class);
  - `module:Class` for a class no package registered, and `FILE.toml`, a profile of one's own.
A name that two of these give is an error naming both, not a silent winner.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from msgspec import Struct

from ..core.senderchoice import Refusal, SenderChoice, choose_senders
from ..errors import LabError, ProfileError, SenderError
from .base import Sender

ENTRY_POINT_GROUP = "downgrade_lab.senders"
PROFILES = Path(__file__).resolve().parent / "profiles"


class SenderInfo(Struct, frozen=True):
    name: str
    target: str  # "module:Class" (relative to this package for the lab's own), or a profile file
    summary: str
    builtin: bool = True  # a default sender: in-process, on loopback
    origin: str = "lab"  # "lab", "profile FILE", "entry point NAME of PACKAGE", "module:Class"
    loopback: bool | None = None  # runs without --isolate (default: builtin)

    @property
    def needs_isolate(self) -> bool:
        return not (self.builtin if self.loopback is None else self.loopback)

    def factory(self) -> Callable[[], Sender]:
        if self.target.endswith(".toml"):
            return _profile_factory(Path(self.target))
        module, _, cls = self.target.partition(":")
        try:
            factory: Callable[[], Sender] = getattr(importlib.import_module(module, __package__), cls)
        except (ImportError, AttributeError) as exc:
            where = self.origin if self.origin != "lab" else f"sender {self.name!r}"
            raise SenderError(f"{where}: cannot import {self.target}: {exc}") from None
        return factory

    def available(self) -> tuple[bool, str]:
        """(can run here, why not). Adapters may define `available()` on their class."""
        try:
            factory = self.factory()
        except LabError as exc:
            return False, str(exc)
        check = getattr(factory, "available", None)
        if check is None:
            return True, ""
        ok, why = check()
        return bool(ok), str(why)


class _ProfileFactory:
    """Makes ProfileSenders of one profile; `available()` reads its `requires`."""

    def __init__(self, file: Path) -> None:
        from ..core.profile import load

        try:
            text = file.read_text()
        except OSError as exc:
            raise ProfileError(str(file), "", f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ProfileError(str(file), "", "not UTF-8 text") from None
        self.profile = load(text, str(file))

    def available(self) -> tuple[bool, str]:
        from .real.profile import available

        return available(self.profile)

    def __call__(self) -> Sender:
        from .real.profile import ProfileSender

        return ProfileSender(self.profile)


@functools.cache
def _profile_factory(file: Path) -> _ProfileFactory:
    return _ProfileFactory(file)


# The lab's own adapters. The order here is the column order of the matrix. Invariant: names are
# unique, and no shipped profile or entry point may reuse one.
SENDERS: dict[str, SenderInfo] = {
    info.name: info
    for info in (
        SenderInfo("reference", ".builtin.reference:ReferenceSender",
                   "RFC 8461 + RFC 8460 sender: the standard the matrix measures against"),
        SenderInfo("opportunistic", ".builtin.opportunistic:OpportunisticSender",
                   "STARTTLS when offered, no certificate checks: the vulnerable default"),
        # Real MTAs (issue 4): they run only with --isolate, in a private network namespace.
        SenderInfo("postfix", ".real.postfix:PostfixSender",
                   "Postfix, smtp_tls_security_level = may (no MTA-STS)", builtin=False),
        SenderInfo("postfix-mta-sts", ".real.postfix:PostfixMtaStsSender",
                   "Postfix + postfix-mta-sts-resolver (strict_testing off)", builtin=False),
        SenderInfo("postfix-mta-sts-strict", ".real.postfix:PostfixMtaStsStrictSender",
                   "Postfix + postfix-mta-sts-resolver, strict_testing on", builtin=False),
        SenderInfo("postfix-dane", ".real.postfix:PostfixDaneSender",
                   "Postfix with DANE (dnssec lookups through unbound, security level dane)",
                   builtin=False),
        SenderInfo("exim-dane", ".real.exim:EximDaneSender",
                   "Exim 4 with DANE (dnssec_request_domains, hosts_try_dane) through unbound",
                   builtin=False),
        SenderInfo("mailauth", ".real.mailauth:MailauthSender",
                   "Node mx-connect + mailauth + nodemailer (ZoneMTA's MTA-STS path)",
                   builtin=False),
        SenderInfo("command", ".real.command:CommandSender",
                   "any program, from the template in DOWNGRADE_LAB_COMMAND", builtin=False),
        # `exim` and `opensmtpd` are profiles: lab/senders/profiles/*.toml, after these.
    )
}


def choose(requested: Sequence[str], *, isolate: bool | None,
           unavailable: Literal["refuse", "skip"] = "refuse") -> SenderChoice | Refusal:
    """Which of `requested` run (none: the built-in senders), decided by the core's
    `choose_senders` on this registry's facts. A request may be a name, `module:Class` or a
    profile FILE.toml: each is resolved first (a broken class or profile is a one-line
    SenderError naming it); a plain name nobody knows is left to the core's `unknown` check."""
    if not requested:
        return choose_senders((), {n: info.builtin for n, info in SENDERS.items()},
                              lambda name: SENDERS[name].available(), isolate=isolate)
    infos: dict[str, SenderInfo] = {}
    for spec in dict.fromkeys(requested):
        try:
            infos[spec] = resolve(spec)
        except SenderError:
            if spec.endswith(".toml") or ":" in spec or spec in all_senders():
                raise
    loopback = {n: not info.needs_isolate for n, info in all_senders().items()}
    loopback.update({spec: not info.needs_isolate for spec, info in infos.items()})
    return choose_senders(requested, loopback, lambda spec: infos[spec].available(),
                          isolate=isolate, unavailable=unavailable)


def _profile_info(file: Path, origin: str) -> SenderInfo:
    profile = _profile_factory(file.resolve()).profile
    return SenderInfo(profile.name, str(file.resolve()), profile.summary, builtin=False,
                      origin=origin)


def _shipped_info(file: Path) -> SenderInfo:
    """A shipped profile's name and summary, read without checking the whole profile (its
    tests do, and it is checked when the sender is made): most runs use none of them."""
    top = tomllib.loads(file.read_text())
    return SenderInfo(str(top["name"]), str(file.resolve()), str(top["summary"]), builtin=False,
                      origin=f"profile {file.name}")


def _class_info(name: str, target: str, origin: str, summary: str = "") -> SenderInfo:
    """An outside class: its summary and loopback flag come from the class itself, imported
    now (an import failure is one line naming `origin`)."""
    probe = SenderInfo(name, target, summary, builtin=False, origin=origin)
    factory = probe.factory()
    doc = (inspect.getdoc(factory) or "").strip().splitlines()
    return SenderInfo(str(getattr(factory, "name", name) if origin == target else name), target,
                      str(getattr(factory, "summary", "") or (doc[0] if doc else target)),
                      builtin=False, origin=origin, loopback=bool(getattr(factory, "loopback", False)))


@functools.cache
def _everything() -> dict[str, SenderInfo]:
    found = dict(SENDERS)

    def add(info: SenderInfo) -> None:
        other = found.get(info.name)
        if other is not None:
            raise SenderError(f"{info.origin}: sender name {info.name!r} is taken by "
                              f"{other.origin if other.origin != 'lab' else 'the lab itself'}")
        found[info.name] = info

    for file in sorted(PROFILES.glob("*.toml")):
        add(_shipped_info(file))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if ep.dist is not None else "?"
        origin = f"entry point {ep.name!r} of package {package!r} ({ENTRY_POINT_GROUP})"
        if ":" not in ep.value:
            raise SenderError(f"{origin}: {ep.value!r} is not module:Class")
        add(SenderInfo(ep.name, ep.value, "", builtin=False, origin=origin))
    return found


def all_senders() -> dict[str, SenderInfo]:
    """Every named sender: the lab's, the shipped profiles, the entry points (not imported yet:
    `describe` imports one). A clash of names is a SenderError naming both sides."""
    return dict(_everything())


def describe(info: SenderInfo) -> SenderInfo:
    """`info` with what only importing the class tells (summary, loopback); an entry point that
    cannot be imported keeps its name and says why in its summary."""
    if info.origin.startswith("entry point"):
        try:
            return _class_info(info.name, info.target, info.origin)
        except LabError as exc:
            return SenderInfo(info.name, info.target, str(exc), builtin=False, origin=info.origin)
    return info


def resolve(spec: str) -> SenderInfo:
    """A sender by name, `module:Class` or profile FILE.toml; SenderError in one line if none."""
    known = _everything()
    if spec in known:  # an entry point is imported now: a failure is one line naming it
        info = known[spec]
        if info.origin.startswith("entry point"):
            return _class_info(info.name, info.target, info.origin)
        return info
    if spec.endswith(".toml"):
        if not Path(spec).is_file():
            raise SenderError(f"sender profile {spec}: no such file")
        return _profile_info(Path(spec), f"profile {spec}")
    if ":" in spec:
        return _class_info(spec, spec, spec)
    raise SenderError(f"unknown sender {spec!r} (known: {', '.join(known)}; or module:Class, "
                      "or a profile FILE.toml)")


def builtin_senders() -> list[str]:
    """Every built-in sender that can run here: what runs when none is asked for."""
    choice = choose((), isolate=None)
    return list(choice.run) if isinstance(choice, SenderChoice) else []


def label(spec: str) -> str:
    """The column name of `spec` in the matrix: the name, the profile's, or the class's."""
    if spec in SENDERS:
        return spec
    try:
        return resolve(spec).name
    except LabError:
        return spec


def make_sender(spec: str) -> Sender:
    info = resolve(spec)
    ok, why = info.available()
    if not ok:
        raise SenderError(f"sender {info.name!r} cannot run here: {why}")
    return info.factory()()
