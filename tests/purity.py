"""The sans-I/O and layering checks (STYLE habit 1, DESIGN §2), shared by the tests of the pure
modules and tests/test_architecture.py.

Two views of what a module imports:
- static: every `import` statement in its source, read with `ast` and resolved to absolute
  module names, wherever it stands: at the top, inside a function (a lazy import) or under
  `if TYPE_CHECKING:` (a dependency of its types). `module_graph` turns a package into edges.
- runtime: what importing a module pulls into a fresh interpreter (`loaded_by_importing`),
  which also sees what third-party libraries import on its behalf.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import downgrade_lab

ROOT = Path(__file__).resolve().parent.parent
# The package's source: lab/ in a checkout, downgrade_lab/ in an unpacked sdist.
PACKAGE = Path(downgrade_lab.__file__).resolve().parent
IO_MODULES = frozenset({"asyncio", "socket", "ssl", "selectors"})

Where = Literal["top", "lazy", "type-checking"]


def imported_roots(module_file: str | Path) -> set[str]:
    """Top-level package names the file imports (`import a.b`, `from a.b import c` -> a)."""
    parts = Path(module_file).parts
    source = PACKAGE.joinpath(*parts[1:]) if parts[:1] == ("lab",) else ROOT / module_file
    tree = ast.parse(source.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {name.split(".")[0] for name in names}


# dkimpy (under lab/core/dkim.py) imports aiodns and its asyncio glue whenever aiodns is installed
# (postfix-mta-sts-resolver brings it), for an async verify the core never calls: the probe hides
# aiodns so that it sees what the core itself needs, on every machine alike.
HIDDEN = ("aiodns",)


def loaded_by_importing(*modules: str, among: frozenset[str] = IO_MODULES) -> set[str]:
    """Which of `among` a fresh interpreter has loaded after importing `modules` (with the
    optional `HIDDEN` libraries made unimportable)."""
    hide = "".join(f"sys.modules[{name!r}] = None; " for name in HIDDEN)
    code = (f"import sys; {hide}import {', '.join(modules)}; "
            f"print(','.join(sorted({set(among)!r} & set(sys.modules))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return {m for m in out.stdout.strip().split(",") if m}


# ---- the static import graph ------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One module of a package: its absolute name, its text, and where it came from."""

    name: str
    text: str
    path: str
    is_package: bool = False  # an __init__.py: `from . import x` is relative to itself


@dataclass(frozen=True)
class Import:
    """One edge: `importer` names `target` (an absolute module name) at `path:line`."""

    importer: str
    target: str
    path: str
    line: int
    where: Where
    names: tuple[str, ...] = ()  # `from target import names`; empty for `import target`

    def __str__(self) -> str:
        how = "" if self.where == "top" else f" ({self.where})"
        return f"{self.importer} -> {self.target}  [{self.path}:{self.line}{how}]"


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 > len(base) - 1:
        raise ValueError(f"{importer}: relative import beyond the top-level package")
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(nodes: Iterable[ast.AST], where: Where = "top"
                ) -> Iterator[tuple[ast.Import | ast.ImportFrom, Where]]:
    """Every import statement among `nodes` and below, with where it stands. Inside a function
    wins over TYPE_CHECKING: such an import runs when the function does."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _statements(ast.iter_child_nodes(node), "lazy")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, "lazy" if where == "lazy" else "type-checking")
            yield from _statements(node.orelse, where)
        else:
            yield from _statements(ast.iter_child_nodes(node), where)


def _with_parents(name: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module runs its packages' __init__ first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_of(source: Source, known: Iterable[str] = ()) -> list[Import]:
    """The imports of one module. `known` (the package's module names) tells a submodule from
    a name in `from pkg import x`; an internal target also stands for its parent packages."""
    modules = set(known)
    found: list[Import] = []
    for node, where in _statements([ast.parse(source.text, source.path)]):
        names: tuple[str, ...] = ()
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif node.module == "__future__":
            continue
        else:
            base = resolve(source.name, source.is_package, node.level, node.module)
            names = tuple(a.name for a in node.names)
            targets = [base, *(f"{base}.{n}" for n in names if f"{base}.{n}" in modules)]
        for target in targets:
            chain = [t for t in _with_parents(target) if t in modules] or [target]
            found += [Import(source.name, t, source.path, node.lineno, where, names)
                      for t in chain if t != source.name]
    return list(dict.fromkeys(found))  # `from .a import x, y` names `.a` once


def package_sources(folder: Path, package: str) -> list[Source]:
    """Every module of the package whose source folder is `folder`, named as `package.*`."""
    sources = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        sources.append(Source(".".join([package, *parts]), path.read_text(), str(path.relative_to(ROOT)
                              if path.is_relative_to(ROOT) else path), is_package))
    return sources


def module_graph(sources: Iterable[Source]) -> list[Import]:
    """All import edges of these modules (targets inside and outside the package)."""
    sources = list(sources)
    names = {s.name for s in sources}
    return [edge for s in sources for edge in imports_of(s, names)]


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@dataclass(frozen=True)
class Circle:
    """Modules that import each other, directly or around: a strongly connected group."""

    members: tuple[str, ...]
    edges: tuple[Import, ...]  # every import between two members
    cycle: tuple[Import, ...]  # a shortest way from the first member back to itself

    def __str__(self) -> str:
        loop = " -> ".join([e.importer for e in self.cycle] + [self.cycle[0].importer])
        return "\n".join([f"circle {loop}", *(f"    {e}" for e in self.edges)])


def circles(edges: Iterable[Import], among: Iterable[str]) -> list[Circle]:
    """The import circles between modules of `among` (Tarjan's strongly connected groups of
    more than one module), in a stable order."""
    names = sorted(set(among))
    out: dict[str, list[Import]] = {n: [] for n in names}
    for e in edges:
        if e.importer in out and e.target in out:
            out[e.importer].append(e)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth: the package's module count, a few dozen
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in out[v]:
            w = e.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in names:
        if name not in index:
            visit(name)
    found = []
    for group in sorted(groups):
        inside = tuple(e for m in group for e in out[m] if e.target in group)
        found.append(Circle(tuple(group), inside, tuple(_shortest_cycle(out, group))))
    return found


def _shortest_cycle(out: Mapping[str, list[Import]], group: list[str]) -> list[Import]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for e in out[v]:
                if e.target == start:
                    return [*paths[v], e]
                if e.target in members and e.target not in paths:
                    paths[e.target] = [*paths[v], e]
                    following.append(e.target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {group}")  # Tarjan said there is one
