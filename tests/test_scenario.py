"""The scenario loader: good files load with the worlds they describe; every malformed file is
one ScenarioError naming the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from downgrade_lab.core.scenario import discover, load_scenario, parse_duration
from downgrade_lab.core.selection import MAX_DEPTH, select
from downgrade_lab.errors import ScenarioError

ROOT = Path(__file__).resolve().parent.parent

GOOD = '''
title = "t"
rfc = ["A-01"]
tags = ["strip"]
[dns]
mx = ["mx1.example.test", "MX2.example.test."]
sts_txt = ["v=STSv1; id=1", ["v=STSv1; ", "id=2"]]
cname = { "_mta-sts.example.test" = "sts.other.test" }
fault = { "_smtp._tls.example.test" = "servfail" }
[policy]
mode = "testing"
max_age = 86400
[receiver]
starttls = false
[[step]]
expect = "delivered"
[[step]]
attack = ["strip-starttls", { kind = "intercept-tls", cert = "wrong-name", hosts = ["mx2.example.test"] }]
expect = "not-delivered"
tolerate = ["delivered-plaintext"]
because = "A-07"
after = "2d"
[step.set.policy]
mode = "enforce"
[step.set.receiver]
starttls = true
'''


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_scenario_builds_each_steps_world(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, GOOD))
    first, second = s.steps
    assert first.world.dns.mx == ("mx1.example.test", "mx2.example.test")
    assert first.world.dns.sts_txt == (("v=STSv1; id=1",), ("v=STSv1; ", "id=2"))
    assert first.world.policy is not None and first.world.policy.mode == "testing"
    assert first.world.policy.mx == ("mx1.example.test", "mx2.example.test")  # default: dns.mx
    assert first.world.receiver.starttls is False
    # step.set applies from its step on; the earlier step keeps the old world
    assert second.world.policy is not None and second.world.policy.mode == "enforce"
    assert second.world.policy.max_age == 86400
    assert second.world.receiver.starttls is True
    assert [a.kind for a in second.attack] == ["strip-starttls", "intercept-tls"]
    assert second.attack[1].cert == "wrong-name" and second.attack[1].hosts == ("mx2.example.test",)
    assert second.attack[0].hosts is None
    assert second.after_s == 2 * 86400 and second.tolerate == ("delivered-plaintext",)
    assert s.needs() == {"clock"}


def test_defaults_make_a_healthy_world(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, 'title = "t"\n[policy]\n[[step]]\nexpect = "delivered-tls"\n'))
    w = s.steps[0].world
    assert w.domain == "example.test" and w.dns.mx == ("mx1.example.test",)
    assert w.policy is not None and (w.policy.mode, w.policy.max_age) == ("enforce", 604800)
    assert w.policy.body() == b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmax_age: 604800\r\n"
    (record,) = w.sts_records()
    assert record[0].startswith("v=STSv1; id=")


def test_auto_id_changes_with_the_policy(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, 'title = "t"\n[policy]\n[[step]]\nexpect = "delivered"\n'
                            '[[step]]\nexpect = "delivered"\n[step.set.policy]\nmode = "testing"\n'))
    assert s.steps[0].world.sts_records() != s.steps[1].world.sts_records()


def test_no_policy_means_no_sts_record(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, 'title = "t"\n[[step]]\nexpect = "delivered"\n'))
    assert s.steps[0].world.sts_records() == ()
    assert s.steps[0].world.tlsrpt_records()  # TLS-RPT is published whether or not STS is


STEP = '[[step]]\nexpect = "delivered"\n'


@pytest.mark.parametrize(("text", "key", "words"), [
    ('title = "t"\n[[step]\n', "", "bad TOML"),
    ('title = "t"\ncolour = 1\n' + STEP, "colour", "unknown key"),
    (STEP, "title", "missing"),
    ('title = "t"\n', "step", "at least one"),
    ('title = "t"\n[[step]]\nattack = []\n', "step[0].expect", "missing"),
    ('title = "t"\n[[step]]\nexpect = "maybe"\n', "step[0].expect", "'maybe' is not one of"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = ["nuke"]\n', "step[0].attack[0].kind", "'nuke'"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = [{kind="strip-starttls", how="reset"}]\n',
     "step[0].attack[0].how", "takes no"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = [{kind="strip-starttls", hosts=["mx9.example.test"]}]\n',
     "step[0].attack[0].hosts", "not an MX host"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = [{kind="strip-starttls", hosts=["*.example.test"]}]\n',
     "step[0].attack[0].hosts", "not patterns"),
    ('title = "t"\n[policy]\nmx = ["mx1.example.test", "mx2.example.test"]\n[[step]]\nexpect = "delivered"\n'
     'attack = [{kind="strip-starttls", hosts=["mx2.example.test"]}]\n',  # in the policy, not in DNS
     "step[0].attack[0].hosts", "not an MX host of this step"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = [{cert="expired"}]\n', "step[0].attack[0].kind", "missing"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nattack = [{kind="intercept-tls", cert="shiny"}]\n',
     "step[0].attack[0].cert", "'shiny'"),
    ('title = "t"\n[receiver]\nstarttls = "yes"\n' + STEP, "receiver.starttls", "true or false"),
    ('title = "t"\n[policy]\nmax_age = "week"\n' + STEP, "policy.max_age", "whole number"),
    ('title = "t"\n[policy]\nmode = "strict"\n' + STEP, "policy.mode", "'strict'"),
    ('title = "t"\n[policy]\nstatus = 999\n' + STEP, "policy.status", "out of range"),
    ('title = "t"\n[policy]\nredirect = "elsewhere"\n' + STEP, "policy.redirect", "absolute path"),
    ('title = "t"\n[dns]\nmx = "mx1.example.test"\n' + STEP, "dns.mx", "list of host names"),
    ('title = "t"\n[dns]\nmx = ["not a host"]\n' + STEP, "dns.mx[0]", "not a host name"),
    ('title = "t"\n[dns]\nsts_txt = 3\n' + STEP, "dns.sts_txt", "auto"),
    ('title = "t"\n[dns]\nfault = { "x.example.test" = "explode" }\n' + STEP, "dns.fault.x.example.test", "'explode'"),
    ('title = "t"\n[message]\nto = "nobody"\n' + STEP, "message.to", "not an address"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\ntolerate = ["delivered"]\n', "step[0].tolerate", "already"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\n[[step]]\nexpect = "delivered"\nafter = "soon"\n',
     "step[1].after", "not a duration"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\nafter = "1d"\n', "step[0].after", "first step"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\n[step.set]\nweather = 1\n', "step[0].set.weather", "unknown key"),
    ('title = "t"\nrfc = ["RFC8461"]\n' + STEP, "rfc[0]", "not a CONFORMANCE.md id"),
    ('title = "t"\n[dns]\nmx = []\n' + STEP, "dns.mx", "needs at least one MX host"),
    ('title = "t"\n[[step]]\nexpect = "delivered"\n[step.set.dns]\nmx = []\n', "step[0].set.dns.mx",
     "needs at least one MX host"),
    ('title = "t"\nx = ' + "[" * 5000 + "]" * 5000 + "\n" + STEP, "", "nested too deeply"),
    ('title = "t"\nx = ' + "{a = " * 5000 + "1" + "}" * 5000 + "\n" + STEP, "", "nested too deeply"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_malformed_scenario_names_file_and_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert words in info.value.message
    assert "\n" not in str(info.value).strip() or "TOML" in str(info.value)


def test_not_utf8_is_a_scenario_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_bytes(b"title = \"\xff\"\n")
    with pytest.raises(ScenarioError, match="UTF-8"):
        load_scenario(p)


@pytest.mark.parametrize(("text", "seconds"), [
    ("2d", 172800), ("36h", 129600), ("90m", 5400), ("30s", 30), ("1w", 604800), ("45", 45), (7, 7),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1d", "2y", "1d2h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_discover_ids_and_select(tmp_path: Path) -> None:
    (tmp_path / "strip").mkdir()
    write(tmp_path / "strip", 'title = "Stripped"\ntags = ["enforce"]\n' + STEP, "warm.toml")
    write(tmp_path, 'title = "Honest"\n' + STEP, "baseline.toml")
    found = discover([tmp_path])
    assert [s.id for s in found] == ["baseline", "strip/warm"]
    assert [s.id for s in discover([tmp_path / "strip" / "warm.toml"])] == ["warm"]
    assert [s.id for s in select(found, "strip")] == ["strip/warm"]
    assert [s.id for s in select(found, "not enforce")] == ["baseline"]
    assert [s.id for s in select(found, "honest or (strip and enforce)")] == ["baseline", "strip/warm"]
    with pytest.raises(ValueError):
        select(found, "strip and")
    with pytest.raises(ScenarioError, match="no such file"):
        discover([tmp_path / "missing"])


def test_the_catalogue_loads() -> None:
    scenarios = discover([ROOT / "scenarios"])
    assert scenarios, "the catalogue is empty"
    assert len({s.id for s in scenarios}) == len(scenarios)


def test_an_empty_policy_mx_list_still_loads(tmp_path: Path) -> None:
    # mode "none" policies list no MX (the catalogue has several); only dns.mx must name one
    s = load_scenario(write(tmp_path, 'title = "t"\n[policy]\nmode = "none"\nmx = []\n' + STEP))
    assert s.steps[0].world.policy is not None and s.steps[0].world.policy.mx == ()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """a/x, a/sub/y and b/x: two files named x.toml in different folders."""
    for rel in ("a/x.toml", "a/sub/y.toml", "b/x.toml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        write(tmp_path, f'title = "{rel}"\n' + STEP, rel)
    return tmp_path


DISCOVERIES = [
    (["."], ["a/sub/y", "a/x", "b/x"]),
    (["a"], ["sub/y", "x"]),  # one folder: ids below it, as before
    (["a/x.toml"], ["x"]),  # one file: its stem
    (["a", "b"], ["a/sub/y", "a/x", "b/x"]),  # several: below the folder holding them all
    (["b/x.toml", "a/x.toml"], ["b/x", "a/x"]),
    (["b", "a/x.toml"], ["b/x", "a/x"]),
    (["a/sub", "a/x.toml"], ["sub/y", "x"]),
    ([".", "a/x.toml"], ["a/sub/y", "a/x", "b/x"]),  # the same file twice runs once
    (["a/x.toml", "a/./x.toml"], ["x"]),
    (["a", "a"], ["sub/y", "x"]),
]


@pytest.mark.parametrize(("given", "ids"), DISCOVERIES, ids=[" ".join(g) for g, _ in DISCOVERIES])
def test_discover_never_gives_two_files_one_id(tree: Path, given: list[str], ids: list[str]) -> None:
    found = discover([tree / g for g in given])
    assert [s.id for s in found] == ids
    # each id is its own file's: the title is the file's path below the tree
    assert all(s.title.removesuffix(".toml").endswith(s.id) for s in found)


def test_discover_names_the_catalogue_files_that_share_a_name() -> None:
    # scenarios/parse and scenarios/tlsrpt both have missing-version.toml
    parse, tlsrpt = ROOT / "scenarios" / "parse", ROOT / "scenarios" / "tlsrpt"
    found = discover([parse, tlsrpt])
    assert len(found) == len(list(parse.glob("*.toml"))) + len(list(tlsrpt.glob("*.toml")))
    assert {"parse/missing-version", "tlsrpt/missing-version"} <= {s.id for s in found}
    found = discover([tlsrpt / "missing-version.toml", parse / "missing-version.toml"])
    assert [s.id for s in found] == ["tlsrpt/missing-version", "parse/missing-version"]


def test_the_same_file_through_a_symlink_runs_once(tree: Path) -> None:
    (tree / "link.toml").symlink_to(tree / "a" / "x.toml")
    assert [s.id for s in discover([tree / "a" / "x.toml", tree / "link.toml"])] == ["a/x"]


def test_two_files_that_would_share_an_id_are_an_error(tree: Path) -> None:
    # a file given directly need not end in .toml: a/x and a/x.toml would both be "x"
    write(tree / "a", 'title = "bare"\n' + STEP, "x")
    with pytest.raises(ScenarioError) as info:
        discover([tree / "a" / "x.toml", tree / "a" / "x"])
    assert str(tree / "a" / "x.toml") in str(info.value) and str(tree / "a" / "x") in str(info.value)


@pytest.mark.parametrize(("make", "words"), [
    (lambda p: None, "no such file or folder"),
    (lambda p: p.symlink_to(p.parent / "gone"), "no such file or folder (a dangling symlink)"),
    (lambda p: p.symlink_to(p), "not a scenario file or folder (a symlink loop)"),
    (lambda p: os.mkfifo(p), "not a scenario file or folder (a named pipe)"),
    (lambda p: p.mkdir(), "no scenario files (*.toml) in this folder or below"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "no scenario files (*.toml)"),
], ids=["missing", "dangling", "loop", "fifo", "empty", "no-toml"])
def test_a_path_that_names_no_scenario_says_why(tmp_path: Path, make: Callable[[Path], object],
                                                words: str) -> None:
    path = tmp_path / "given.toml"
    make(path)
    with pytest.raises(ScenarioError) as info:
        discover([path])
    assert info.value.file == str(path) and words in info.value.message


# Run as a user the folder's 000 mode applies to: root reads any folder.
UNREADABLE = """
import sys
from downgrade_lab.errors import ScenarioError
from downgrade_lab.core.scenario import discover
try:
    print([s.id for s in discover([sys.argv[1]])])
except ScenarioError as exc:
    print(exc)
"""


def test_a_folder_that_cannot_be_read_is_an_error_not_a_gap(run_tmp: Path) -> None:
    top = run_tmp / "dir"
    (top / "sub").mkdir(parents=True)
    write(top, 'title = "b"\n' + STEP, "b.toml")
    write(top / "sub", 'title = "c"\n' + STEP, "c.toml")
    top.chmod(0o755)
    (top / "sub").chmod(0o000)
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []

    def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=60, check=False, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    probe = python("import downgrade_lab.core.scenario")
    if probe.returncode != 0:
        pytest.skip(f"the unprivileged user cannot run the lab here: {probe.stderr.strip()[-200:]}")
    try:
        done = python(UNREADABLE, str(top))
    finally:
        (top / "sub").chmod(0o755)
    assert done.stdout == f"{top}: cannot read folder {top / 'sub'}: permission denied\n", done.stderr


@pytest.mark.parametrize("expr", [
    "(" * 3000 + "strip" + ")" * 3000,
    "not " * 5000 + "strip",
    "(not " * (MAX_DEPTH // 2 + 1) + "strip" + ")" * (MAX_DEPTH // 2 + 1),
], ids=["3000-parentheses", "5000-nots", "mixed-past-the-limit"])
def test_selection_refuses_expressions_nested_too_deeply(tree: Path, expr: str) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        select(discover([tree]), expr)


def test_selection_nests_up_to_the_limit(tree: Path) -> None:
    found = discover([tree])
    assert [s.id for s in select(found, "(" * MAX_DEPTH + "sub" + ")" * MAX_DEPTH)] == ["a/sub/y"]
    assert [s.id for s in select(found, "not " * MAX_DEPTH + "sub")] == ["a/sub/y"]


def test_a_leading_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Editors on some systems save UTF-8 with a BOM; TOML does not allow one, we skip it."""
    from downgrade_lab.core.scenario import load_scenario

    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'title = "t"\n[[step]]\nexpect = "delivered"\n')
    assert load_scenario(path).title == "t"


LISTING_LAYOUT = '''title = "t"
[policy]
mode = "enforce"
[[step]]
expect = "delivered-tls"
[[step]]
attack = ["strip-starttls"]
expect = "not-delivered"
[step.set]
policy = { mode = "testing" }
after = "2d"
report = ["starttls-not-supported"]
'''


def test_step_keys_written_below_step_set_as_in_the_design_listing(tmp_path: Path) -> None:
    """DESIGN §4 lists `after` and `report` under `[step.set]`; TOML then nests them in `set`.
    They are read as the step's own; the world change in `set` still applies."""
    from downgrade_lab.core.scenario import load_scenario

    path = tmp_path / "layout.toml"
    path.write_text(LISTING_LAYOUT)
    second = load_scenario(path).steps[1]
    assert second.after_s == 2 * 86400 and second.report == ("starttls-not-supported",)
    assert second.world.policy is not None and second.world.policy.mode == "testing"
    path.write_text(LISTING_LAYOUT.replace('expect = "not-delivered"\n',
                                           'expect = "not-delivered"\nafter = "1d"\n'))
    with pytest.raises(ScenarioError, match=r"step\[1\]\.set\.after.*already"):
        load_scenario(path)
