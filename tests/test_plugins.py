"""Senders from anywhere (issue 14): a temporary package with an entry point in the group
`downgrade_lab.senders`, put on sys.path of a subprocess as an installed distribution (a
dist-info folder with entry_points.txt), is listed by `downgrade-lab senders`, runs the
catalogue and the pytest plugin; the same class runs as `--sender module:Class`; a broken
entry point, a clash of names and a wrong profile are one line naming the culprit.

The sender is docs/examples/plugin/strict_tls_sender.py, the example docs/plugins.md shows, so
the example is proven by these runs too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.isolation import need_isolation

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "plugin" / "strict_tls_sender.py"
SCENARIOS = ROOT / "scenarios"
TWO = [str(SCENARIOS / "baseline" / "healthy.toml"), str(SCENARIOS / "strip" / "starttls-enforce-warm.toml")]


def package(site: Path, dist: str, entry_points: dict[str, str], module: str = "dgl_strict") -> Path:
    """An installed distribution `dist` under `site`: the example as `module`, and a dist-info
    whose entry_points.txt registers `entry_points` (name -> module:Class)."""
    site.mkdir(exist_ok=True)
    (site / module).mkdir(exist_ok=True)
    shutil.copyfile(EXAMPLE, site / module / "__init__.py")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[downgrade_lab.senders]\n{lines}")
    return site


def lab(site: Path | None, *args: str, cwd: Path | None = None, timeout: float = 120,
        module: str = "downgrade_lab") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTHONPATH")}
    env.update(NO_COLOR="1", **({"PYTHONPATH": str(site)} if site else {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def record(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return package(tmp_path / "site", "dgl-strict", {"strict-tls": "dgl_strict:StrictTlsSender"})


def test_an_entry_point_is_listed_with_its_package(site: Path) -> None:
    done = lab(site, "senders")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("strict-tls "))
    assert "ready" in line
    assert "Verified STARTTLS to the best MX or nothing" in line  # the class's docstring
    assert "entry point 'strict-tls' of package 'dgl-strict'" in line


def test_without_the_package_it_is_not_there(tmp_path: Path) -> None:
    done = lab(None, "senders")
    assert done.returncode == 0 and "strict-tls" not in done.stdout
    done = lab(None, "run", "--sender", "strict-tls", *TWO)
    assert done.returncode == 2
    assert done.stderr.startswith("downgrade-lab: unknown sender 'strict-tls' (known: reference")
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.timeout(300)  # the whole catalogue, about 15 s on an idle machine
def test_an_entry_point_sender_runs_the_catalogue(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    done = lab(site, "run", "--sender", "strict-tls", "-j", "4", "--json", str(out), timeout=240)
    assert done.returncode == 1, done.stderr  # it FAILs where delivery without TLS is expected
    rec = record(out)
    assert {r["sender"] for r in rec["results"]} == {"strict-tls"}
    assert len(rec["results"]) > 150 and rec["summary"]["ERROR"] == 0
    cells = {r["scenario"]: r["verdict"] for r in rec["results"]}
    assert cells["strip/starttls-enforce-warm"] == "PASS"  # never plaintext
    assert cells["baseline/no-starttls"] == "FAIL"  # ... even where the RFC wants it
    assert cells["cache/expired-policy"] == "SKIP"  # no `clock` capability


def test_the_same_class_runs_as_module_class(site: Path, tmp_path: Path) -> None:
    by_name, by_class = tmp_path / "a.json", tmp_path / "b.json"
    assert lab(site, "run", "--sender", "strict-tls", "--json", str(by_name), *TWO).returncode == 0
    done = lab(site, "run", "--sender", "dgl_strict:StrictTlsSender", "--json", str(by_class), *TWO)
    assert done.returncode == 0, done.stderr
    a, b = record(by_name), record(by_class)
    assert [r["sender"] for r in b["results"]] == ["strict-tls", "strict-tls"]  # the class's name
    assert [(r["scenario"], r["verdict"]) for r in a["results"]] == \
        [(r["scenario"], r["verdict"]) for r in b["results"]]


@pytest.mark.parametrize("spec, words", [
    ("dgl_strict:NoSuchClass", "dgl_strict:NoSuchClass: cannot import dgl_strict:NoSuchClass: module "
                               "'dgl_strict' has no attribute 'NoSuchClass'"),
    ("dgl_nowhere:Sender", "cannot import dgl_nowhere:Sender: No module named 'dgl_nowhere'"),
    ("nothing-at-all", "unknown sender 'nothing-at-all'"),
])
def test_a_class_that_cannot_be_had_is_one_line(site: Path, spec: str, words: str) -> None:
    done = lab(site, "run", "--sender", spec, *TWO)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_a_broken_entry_point_names_package_and_entry_point(tmp_path: Path) -> None:
    site = package(tmp_path / "site", "dgl-broken", {"broken": "dgl_missing:Sender"})
    listing = lab(site, "senders")
    assert listing.returncode == 0
    assert "broken" in listing.stdout and "unavailable" in listing.stdout
    done = lab(site, "run", "--sender", "broken", *TWO)
    assert done.returncode == 2
    assert done.stderr == ("downgrade-lab: entry point 'broken' of "
                           "package 'dgl-broken' (downgrade_lab.senders): cannot import "
                           "dgl_missing:Sender: No module named 'dgl_missing'\n")


@pytest.mark.parametrize("name, taken_by", [
    ("postfix", "the lab itself"),
    ("opensmtpd", "profile opensmtpd.toml"),
])
def test_a_name_clash_is_one_line_naming_both(tmp_path: Path, name: str, taken_by: str) -> None:
    site = package(tmp_path / "site", "dgl-clash", {name: "dgl_strict:StrictTlsSender"})
    for args in (["senders"], ["run", "--sender", "reference", *TWO]):
        done = lab(site, *args)
        assert done.returncode == 2
        assert done.stderr == (f"downgrade-lab: entry point {name!r} of package 'dgl-clash' "
                               f"(downgrade_lab.senders): sender name {name!r} is taken by {taken_by}\n")


def test_two_packages_with_one_name_clash(tmp_path: Path) -> None:
    site = package(tmp_path / "site", "dgl-one", {"twin": "dgl_strict:StrictTlsSender"})
    package(site, "dgl-two", {"twin": "dgl_strict:StrictTlsSender"})
    done = lab(site, "senders")
    assert done.returncode == 2 and "sender name 'twin' is taken by entry point 'twin' of package" \
        in done.stderr, done.stderr


def test_the_pytest_plugin_takes_an_entry_point_sender(site: Path, tmp_path: Path) -> None:
    args = ["--lab-scenarios", TWO[1], "-p", "no:xdist", "-p", "no:cacheprovider", "-q"]
    done = lab(site, *args, "--lab-sender", "strict-tls", cwd=tmp_path, module="pytest")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 passed" in done.stdout
    bad = lab(site, *args, "--lab-sender", "dgl_nowhere:Sender", cwd=tmp_path, module="pytest")
    assert bad.returncode == 4  # a usage error, one line
    assert "--lab-sender: dgl_nowhere:Sender: cannot import" in bad.stderr


def test_an_entry_point_sender_runs_isolated(site: Path, tmp_path: Path, run_tmp: Path) -> None:
    need_isolation()
    out = tmp_path / "record.json"
    env_site = run_tmp / "site"
    shutil.copytree(site, env_site)  # reachable from inside the namespace
    done = lab(env_site, "run", "--isolate", "--sender", "strict-tls", "--json", str(out), *TWO)
    assert done.returncode == 0, done.stderr
    assert [r["verdict"] for r in record(out)["results"]] == ["PASS", "PASS"]


# -- profiles from a file ------------------------------------------------------------------------

TOY = """
name = "toy"
summary = "a toy daemon"
[start]
run = "sleep 30"
[submit]
via = "command"
command = "true"
[outcome]
log = "toy.log"
delivered = "{{id}} sent"
"""


@pytest.mark.parametrize("text, args, words", [
    (TOY, [], "toy.toml' runs only with --isolate"),
    (TOY.replace('via = "command"', 'via = "carrier-pigeon"'), [],
     "toy.toml: submit.via: must be \"smtp\" or \"command\", got a string 'carrier-pigeon'"),
    (TOY.replace('"{{id}} sent"', '"{{msgid}} sent"'), [], "toy.toml: outcome.delivered: unknown placeholder {{msgid}}"),
    (TOY + "[requires]\nprograms = ['/nonexistent/toyd']\nhow = 'build it'\n", ["--isolate"],
     "toy.toml' cannot run here: /nonexistent/toyd not found (build it)"),
])
def test_a_profile_file_is_checked_before_anything_runs(tmp_path: Path, text: str, args: list[str],
                                                        words: str) -> None:
    (tmp_path / "toy.toml").write_text(text)
    done = lab(None, "run", "--sender", str(tmp_path / "toy.toml"), *args, *TWO)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_a_missing_profile_file_is_one_line(tmp_path: Path) -> None:
    done = lab(None, "run", "--sender", str(tmp_path / "nope.toml"), *TWO)
    assert (done.returncode, done.stderr) == (2, f"downgrade-lab: sender profile {tmp_path / 'nope.toml'}: "
                                                 "no such file\n")


def test_the_doc_shows_the_example_verbatim() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    marker = "<!-- example: docs/examples/plugin/strict_tls_sender.py -->\n```python\n"
    assert marker in doc
    shown = doc.split(marker, 1)[1].split("```\n", 1)[0]
    assert shown == EXAMPLE.read_text()
    assert 30 <= len(shown.splitlines()) <= 60  # "about 40 lines"


def test_the_api_module_exports_what_the_doc_lists() -> None:
    import downgrade_lab.api as api

    doc = (ROOT / "docs" / "plugins.md").read_text()
    for name in api.__all__:
        assert f"`{name}" in doc, f"docs/plugins.md does not list {name}"
        assert getattr(api, name).__doc__ or name in ("ENTRY_POINT_GROUP", "SenderState"), \
            f"{name} has no docstring"
