"""The architecture, checked (DESIGN §2, STYLE habit 1, issue 11): a pure core, faces nobody
imports, no import circle.

Read from the sources with `ast` (tests/purity.py), so a lazy import inside a function or one
under `if TYPE_CHECKING:` counts as much as one at the top: each is a dependency between
modules, and a circle through a lazy import is still a circle. Every check runs on the real
package and, beside it, on a small made-up one that breaks the rule, to prove it can fail.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from tests.purity import (
    ROOT,
    Circle,
    Import,
    Source,
    circles,
    imports_of,
    loaded_by_importing,
    module_graph,
    package_sources,
    resolve,
    within,
)

PACKAGE = "downgrade_lab"  # the import name; the source folder is lab/
SOURCES = package_sources(ROOT / "lab", PACKAGE)
GRAPH = module_graph(SOURCES)

# What no module of the core may import (a name, or anything below it): the event loop, sockets
# and TLS, processes and threads, and every library that talks to a network. Pure parts of the
# same libraries stay allowed: dnslib's and dnspython's records, urllib.parse, email.
NO_IO = (
    "asyncio", "socket", "ssl", "selectors", "subprocess", "threading", "multiprocessing",
    "concurrent", "socketserver", "http", "urllib.request", "smtplib", "ftplib", "poplib",
    "imaplib", "xmlrpc",
    "aiohttp", "aiosmtpd", "aiosmtplib", "aiodns", "requests", "httpx", "urllib3", "scapy",
    "dns.query", "dns.asyncquery", "dns.resolver", "dns.asyncresolver", "dns.asyncbackend",
    "dnslib.server", "dnslib.client", "dnslib.proxy", "dnslib.intercept",
)
# Outside the core, what the core may still use: the package itself (its __version__) and the
# error classes every layer raises.
CORE_MAY_USE = ("", "errors")
# The one module outside the faces that may import them: `python -m downgrade_lab` is the CLI.
FACE_USERS = ("__main__",)

# The circle this branch still has (issue 11 item 2): the CLI imports progress, demo_view and
# up, which take Environment/UsageError back from the CLI. Moving those into
# lab/frontends/console.py (branch h2-record) removes it; any other circle is new.
KNOWN_CIRCLE = frozenset({"frontends.cli", "frontends.progress", "frontends.demo_view", "frontends.up"})
KNOWN_NAMES = frozenset({"Environment", "UsageError", "ExitStatus"})


def sub(name: str, package: str = PACKAGE) -> str:
    """`core.policy` -> `downgrade_lab.core.policy`; "" -> the package itself."""
    return f"{package}.{name}" if name else package


def core_violations(edges: Iterable[Import], package: str = PACKAGE) -> list[str]:
    """Each import by a module of `package.core` (or what it may use) of I/O or of the lab
    outside the core."""
    edges = list(edges)
    allowed = [sub(n, package) for n in CORE_MAY_USE]
    pure = {e.importer for e in edges if within(e.importer, sub("core", package)) or e.importer in allowed}
    bad = []
    for e in edges:
        if e.importer not in pure:
            continue
        named = [e.target, *(f"{e.target}.{n}" for n in e.names)]  # `from dns import query`
        if any(within(t, name) for t in named for name in NO_IO):
            bad.append(f"{e}: I/O in the core")
        elif within(e.target, package) and not (within(e.target, sub("core", package))
                                                 or e.target in allowed):
            bad.append(f"{e}: the core reaches outside lab/core")
    return bad


def face_violations(edges: Iterable[Import], package: str = PACKAGE) -> list[str]:
    """Each import of `package.frontends` from outside it (FACE_USERS aside)."""
    faces = sub("frontends", package)
    users = [sub(n, package) for n in FACE_USERS]
    return [f"{e}: a face imported from outside lab/frontends" for e in edges
            if within(e.target, faces) and not within(e.importer, faces) and e.importer not in users]


def package_circles(sources: list[Source], edges: Iterable[Import]) -> list[Circle]:
    return circles(edges, [s.name for s in sources])


def is_known(circle: Circle, package: str = PACKAGE) -> bool:
    """Exactly the circle of KNOWN_CIRCLE: its modules only, closed only by imports of the
    console names back from the CLI."""
    members = {m.removeprefix(package + ".") for m in circle.members}
    back = [e for e in circle.edges if e.target == sub("frontends.cli", package)]
    return members <= KNOWN_CIRCLE and bool(back) and all(
        e.names and set(e.names) <= KNOWN_NAMES for e in back)


def describe(found: list[Circle]) -> str:
    lines = [f"{len(found)} import circle(s) in {PACKAGE} (lazy and TYPE_CHECKING imports count):"]
    for circle in found:
        lines.append(str(circle))
        if is_known(circle):
            lines.append("    ^ KNOWN on this branch: the console circle of issue 11 item 2; gone once "
                         "Environment/ExitStatus/UsageError live in lab/frontends/console.py")
    return "\n".join(lines)


def made_up(modules: dict[str, str]) -> list[Source]:
    """A small package `pkg` from {dotted name below pkg: source}; "" is pkg itself, and a
    name with others below it is a package (its __init__)."""
    names = {".".join(n.split(".")[:i]) for n in modules for i in range(len(n.split(".")) + 1)}
    return [Source(sub(name, "pkg"), modules.get(name, ""), f"<{sub(name, 'pkg')}>",
                   name == "" or any(n.startswith(name + ".") for n in names))
            for name in sorted(names)]


# ---- reading imports ---------------------------------------------------------------------------

@pytest.mark.parametrize(("importer", "is_package", "level", "module", "absolute"), [
    ("pkg.core.policy", False, 1, "model", "pkg.core.model"),
    ("pkg.core.policy", False, 2, "errors", "pkg.errors"),
    ("pkg.core.policy", False, 2, None, "pkg"),
    ("pkg.frontends.report.svg", False, 3, "core.verdict", "pkg.core.verdict"),
    ("pkg.core", True, 1, "model", "pkg.core.model"),
    ("pkg.core", True, 2, None, "pkg"),
    ("pkg.core.policy", False, 0, "asyncio", "asyncio"),
], ids=["sibling", "parent", "package-itself", "three-up", "from-init", "init-parent", "absolute"])
def test_relative_imports_resolve(importer: str, is_package: bool, level: int, module: str | None,
                                  absolute: str) -> None:
    assert resolve(importer, is_package, level, module) == absolute


def test_a_relative_import_beyond_the_package_is_refused() -> None:
    with pytest.raises(ValueError, match="beyond the top-level package"):
        resolve("pkg.core", False, 3, "x")


def test_imports_are_found_wherever_they_stand() -> None:
    *_, source = made_up({"core.x": '''
from __future__ import annotations
import json, asyncio.events
from typing import TYPE_CHECKING
from . import y
from .. import errors
if TYPE_CHECKING:
    from ..harness import lab
    def hint() -> None:
        import socket
else:
    import ssl
def later() -> None:
    from ..services.dns import DnsServer
class Shell:
    async def run(self) -> None:
        import subprocess
handler = lambda: __import__("os")
'''})  # pkg, pkg.core, pkg.core.x
    known = {"pkg", "pkg.core", "pkg.core.x", "pkg.core.y", "pkg.errors", "pkg.harness",
             "pkg.harness.lab", "pkg.services", "pkg.services.dns"}
    found = {(e.target, e.where) for e in imports_of(source, known)}
    assert found == {
        ("json", "top"), ("asyncio.events", "top"), ("typing", "top"),
        ("pkg", "top"), ("pkg.core", "top"), ("pkg.core.y", "top"), ("pkg.errors", "top"),
        ("pkg", "type-checking"), ("pkg.harness", "type-checking"), ("pkg.harness.lab", "type-checking"),
        ("socket", "lazy"), ("ssl", "top"),
        ("pkg", "lazy"), ("pkg.services", "lazy"), ("pkg.services.dns", "lazy"),
        ("subprocess", "lazy"),
    }  # `__import__` is a call, not a statement: out of reach here, as for any reader


def test_the_whole_package_is_read() -> None:
    names = {s.name for s in SOURCES}
    assert {sub("core.policy"), sub("frontends.cli"), sub("frontends.report.svg"), sub("errors"),
            sub("__main__"), sub("senders.real.postfix"), PACKAGE} <= names
    assert len(GRAPH) > 100  # a real graph, not an empty one that passes every check


# ---- the core is pure --------------------------------------------------------------------------

def test_the_core_imports_no_io_and_nothing_outside_it() -> None:
    assert core_violations(GRAPH) == []


CORE_BREAKS = [
    ("import asyncio", "pkg.core.x -> asyncio  [<pkg.core.x>:1]: I/O in the core"),
    ("import socket", "I/O in the core"),
    ("from ssl import SSLContext", "I/O in the core"),
    ("import subprocess", "I/O in the core"),
    ("import threading", "I/O in the core"),
    ("from aiohttp import web", "I/O in the core"),
    ("import aiosmtplib", "I/O in the core"),
    ("from aiosmtpd.smtp import SMTP", "I/O in the core"),
    ("import dns.asyncquery", "I/O in the core"),
    ("from dns import query", "I/O in the core"),
    ("from dnslib.server import DNSServer", "I/O in the core"),
    ("from http.client import HTTPSConnection", "I/O in the core"),
    ("import urllib.request", "I/O in the core"),
    ("def f():\n    import socket", "(lazy)]: I/O in the core"),
    ("from ..harness.lab import Lab", "the core reaches outside lab/core"),
    ("from ..services import dns", "the core reaches outside lab/core"),
    ("from ..frontends.cli import main", "the core reaches outside lab/core"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..harness.pki import PKI",
     "(type-checking)]: the core reaches outside lab/core"),
]


def _core_break_id(source: str) -> str:
    where = " (lazy)" if "def " in source else " (type-checking)" if "TYPE_CHECKING" in source else ""
    return source.splitlines()[-1].strip() + where


@pytest.mark.parametrize(("source", "problem"), CORE_BREAKS, ids=[_core_break_id(s) for s, _ in CORE_BREAKS])
def test_a_core_module_that_does_io_or_reaches_out_is_caught(source: str, problem: str) -> None:
    sources = made_up({"core.x": source, "harness.lab": "", "harness.pki": "", "services.dns": "",
                       "frontends.cli": ""})
    found = core_violations(module_graph(sources), "pkg")
    assert any(problem in v for v in found), found


def test_what_the_core_may_use_is_not_caught() -> None:
    sources = made_up({"": "__version__ = '1'", "errors": "class LabError(Exception): ...",
                       "core.y": "",
                       "core.x": "import re, json, msgspec, urllib.parse, email.message, dnslib\n"
                                 "import dns.name, dns.message\n"
                                 "from . import y\nfrom .. import __version__\nfrom ..errors import LabError"})
    assert core_violations(module_graph(sources), "pkg") == []


def test_what_errors_imports_counts_as_the_core() -> None:
    sources = made_up({"errors": "from .harness.lab import Lab", "harness.lab": "",
                       "core.x": "from ..errors import LabError"})
    assert core_violations(module_graph(sources), "pkg") == [
        "pkg.errors -> pkg.harness  [<pkg.errors>:1]: the core reaches outside lab/core",
        "pkg.errors -> pkg.harness.lab  [<pkg.errors>:1]: the core reaches outside lab/core"]


def test_importing_the_core_loads_no_event_loop_process_or_network_client() -> None:
    """At run time too (what libraries import on the core's behalf). ssl, socket and threading
    are not among these: dnspython and dnslib load them for their own helpers, unused here."""
    core = sorted(s.name for s in SOURCES if within(s.name, sub("core")))
    banned = frozenset({"asyncio", "subprocess", "aiohttp", "aiosmtpd", "aiosmtplib"})
    assert loaded_by_importing(*core, among=banned) == set()
    # the twin: the same probe sees them where they are used (`Lab` starts the services)
    assert loaded_by_importing(sub("harness.lab"), among=banned) >= {"asyncio", "aiohttp", "aiosmtpd"}


# ---- nothing imports the faces -----------------------------------------------------------------

def test_nothing_outside_the_faces_imports_them() -> None:
    assert face_violations(GRAPH) == []


@pytest.mark.parametrize(("importer", "source"), [
    ("services.dns", "from ..frontends.cli import Environment"),
    ("harness.runner", "def f():\n    from ..frontends import progress"),
    ("core.verdict", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..frontends.report import svg"),
    ("senders.registry", "import pkg.frontends.cli"),
    ("errors", "from .frontends import demo"),
], ids=["service", "lazy-in-wiring", "type-checking-in-core", "absolute", "errors"])
def test_an_import_of_a_face_from_outside_is_caught(importer: str, source: str) -> None:
    sources = made_up({"frontends.cli": "", "frontends.progress": "", "frontends.demo": "",
                       "frontends.report.svg": "", importer: source})
    found = face_violations(module_graph(sources), "pkg")
    assert found and all("a face imported from outside lab/frontends" in v for v in found), found


def test_the_faces_may_import_each_other_and_main_may_import_the_cli() -> None:
    sources = made_up({"__main__": "from .frontends.cli import main",
                       "frontends.cli": "from .report import svg",
                       "frontends.report.svg": "from ...core import verdict", "core.verdict": ""})
    assert face_violations(module_graph(sources), "pkg") == []


# ---- no import circle --------------------------------------------------------------------------

def test_no_import_circle_anywhere_in_the_package() -> None:
    found = package_circles(SOURCES, GRAPH)
    assert not found, describe(found)


@pytest.mark.parametrize(("modules", "members"), [
    ({"a": "from . import b", "b": "from . import a"}, ("pkg.a", "pkg.b")),
    ({"a": "from . import b", "b": "def f():\n    from .c import x", "c": "from .a import y"},
     ("pkg.a", "pkg.b", "pkg.c")),
    ({"a": "from .b import x",
      "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import Y"},
     ("pkg.a", "pkg.b")),
    ({"sub": "from .x import f", "sub.x": "from .. import helper", "helper": "from .sub import g"},
     ("pkg.helper", "pkg.sub", "pkg.sub.x")),
], ids=["direct", "lazy-three", "type-checking", "through-an-init"])
def test_a_circle_is_caught(modules: dict[str, str], members: tuple[str, ...]) -> None:
    sources = made_up(modules)
    [circle] = package_circles(sources, module_graph(sources))
    assert circle.members == members
    assert circle.cycle[0].importer == circle.cycle[-1].target == members[0]
    assert str(circle).startswith(f"circle {members[0]} -> ")


def test_a_tree_of_imports_has_no_circle() -> None:
    sources = made_up({"a": "from . import b, c\nfrom .b import x", "b": "from . import c",
                       "c": "import asyncio\ndef f():\n    from . import d", "d": ""})
    assert package_circles(sources, module_graph(sources)) == []


@pytest.mark.parametrize(("extra", "known"), [
    ({}, True),
    ({"frontends.progress": "from .cli import run_everything"}, False),  # another name
    ({"frontends.report.svg": "from ..cli import Environment",
      "frontends.cli": "from . import progress\nfrom .report import svg"}, False),  # another module
], ids=["the-console-circle", "other-names", "other-modules"])
def test_only_the_console_circle_is_marked_known(extra: dict[str, str], known: bool) -> None:
    modules = {"frontends.cli": "def f():\n    from . import progress",
               "frontends.progress": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                     "    from .cli import Environment", **extra}
    sources = made_up(modules)
    found = package_circles(sources, module_graph(sources))
    assert [is_known(c, "pkg") for c in found] == [known]
