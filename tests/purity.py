"""The sans-I/O check (STYLE habit 1) shared by the tests of the pure modules: what a module's
source imports, and what importing it pulls into a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import downgrade_lab

ROOT = Path(__file__).resolve().parent.parent
# The package's source: lab/ in a checkout, downgrade_lab/ in an unpacked sdist.
PACKAGE = Path(downgrade_lab.__file__).resolve().parent
IO_MODULES = frozenset({"asyncio", "socket", "ssl", "selectors"})


def imported_roots(module_file: str | Path) -> set[str]:
    """Top-level package names the file imports (`import a.b`, `from a.b import c` -> a)."""
    parts = Path(module_file).parts
    source = PACKAGE.joinpath(*parts[1:]) if parts[:1] == ("lab",) else ROOT / module_file
    tree = ast.parse(source.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {name.split(".")[0] for name in names}


def loaded_by_importing(*modules: str, among: frozenset[str] = IO_MODULES) -> set[str]:
    """Which of `among` a fresh interpreter has loaded after importing `modules`."""
    code = (f"import sys, {', '.join(modules)}; "
            f"print(','.join(sorted({set(among)!r} & set(sys.modules))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return {m for m in out.stdout.strip().split(",") if m}
