"""The new user (STYLE habit 13, issue 13): the wheel built from this checkout, installed into a
fresh venv, used from an empty project folder that has a `lab` package of its own.

Slow (a build and a pip install, once per session: every xdist worker shares one venv); skip it
with `-m "not slow"`. CI runs it (`make test`).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import downgrade_lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p.relative_to(ROOT / "scenarios").as_posix()
                   for p in (ROOT / "scenarios").rglob("*.toml"))
IDS = sorted(s.removesuffix(".toml") for s in SCENARIOS)
STRIP = [s for s in IDS if s.startswith("strip/")]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this test run or of the checkout's venv."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "PYTEST_ADDOPTS", "PYTHONPATH", "VIRTUAL_ENV", "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_WORKER_COUNT", "PYTEST_CURRENT_TEST", "PYTHONDONTWRITEBYTECODE")}
    return env | extra


def _run(argv: list[str], cwd: Path, timeout: float = 300, **env: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=_clean_env(**env), capture_output=True, text=True,
                          timeout=timeout, check=False)


class Install:
    """The built distributions and the venv the wheel is installed in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bin = folder / "venv" / "bin"

    @property
    def wheel(self) -> Path:
        return next((self.folder / "dist").glob("*.whl"))

    @property
    def sdist(self) -> Path:
        return next((self.folder / "dist").glob("*.tar.gz"))

    def build(self) -> None:
        dist = self.folder / "dist"
        done = _run([sys.executable, "-m", "build", "-o", str(dist), str(ROOT)], cwd=self.folder,
                    timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # a deprecated pyproject spelling (a license table, ...) shows as a warning of the build
        assert "Deprecat" not in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
        done = _run([sys.executable, "-m", "venv", str(self.folder / "venv")], cwd=self.folder)
        assert done.returncode == 0, done.stderr
        done = _run([str(self.bin / "python"), "-m", "pip", "install", "-q",
                     f"{self.wheel}[pytest]"], cwd=self.folder, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """Built and installed once per session, whatever the number of xdist workers (they share
    the parent of their temporary folders; a lock lets the first build and the rest reuse)."""
    pytest.importorskip("build", reason="needs the `build` package: pip install -e '.[test]'")
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's folder is below the session's; alone, the session's is it
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "new-user"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = Install(shared)
        if not (shared / ".done").exists():
            found.build()
            (shared / ".done").write_text("ok\n")
    return found


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """An empty project folder of a user, with a `lab` package of its own (a common name)."""
    folder = tmp_path / "project"
    (folder / "lab").mkdir(parents=True)
    (folder / "lab" / "__init__.py").write_text('"""The project\'s own lab package."""\n')
    (folder / "lab" / "__main__.py").write_text('raise SystemExit("the project\'s own lab")\n')
    (folder / "lab" / "pytest_plugin.py").write_text(
        'raise ImportError("the project\'s own lab is no pytest plugin")\n')
    (folder / "lab" / "frontends").mkdir()
    (folder / "lab" / "frontends" / "__init__.py").write_text('raise ImportError("not ours")\n')
    yield folder


def _cells(record_file: Path) -> list[tuple[str, str, str, str]]:
    from downgrade_lab.frontends.report.terminal import cell_outcome

    record = json.loads(record_file.read_text())
    return sorted((r["scenario"], r["sender"], r["verdict"], cell_outcome(r))
                  for r in record["results"])


def test_the_wheel_holds_the_catalogue_and_the_real_senders_setup(install: Install) -> None:
    names = set(zipfile.ZipFile(install.wheel).namelist())
    assert {f"downgrade_lab/scenarios/{s}" for s in SCENARIOS} <= names
    assert {"downgrade_lab/senders/real/install-real-senders.sh",
            "downgrade_lab/senders/real/node/package.json",
            "downgrade_lab/senders/real/node/package-lock.json",
            "downgrade_lab/senders/real/node/mailauth-send.mjs",
            "downgrade_lab/py.typed"} <= names
    assert not any(n.startswith("lab/") for n in names), "the import name is downgrade_lab only"
    metadata = zipfile.ZipFile(install.wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata and "Classifier: Framework :: Pytest" in metadata
    assert any(n.endswith("/licenses/LICENSE") for n in names)


def test_the_sdist_holds_what_its_own_tests_read(install: Install) -> None:
    with tarfile.open(install.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n.removeprefix(top + "/") for n in tar.getnames()}
    wanted = {f"scenarios/{s}" for s in SCENARIOS}
    wanted |= {p.relative_to(ROOT).as_posix() for folder in ("tests", "docs")
               for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    wanted |= {"Makefile", "LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml",
               "scripts/install-real-senders.sh"}
    assert wanted <= names, sorted(wanted - names)[:20]


def test_the_sdist_runs_its_own_tests(install: Install, tmp_path: Path) -> None:
    """Unpacked, the sdist is a project that tests itself: a share of its suite (the catalogue,
    the docs, shards, merge, the purity checks) with this interpreter's test tools and the
    sdist's own package first on the path."""
    with tarfile.open(install.sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    probe = _run([sys.executable, "-c", "import downgrade_lab; print(downgrade_lab.__file__)"],
                 cwd=unpacked, PYTHONPATH=str(unpacked))
    assert probe.stdout.startswith(str(unpacked)), probe.stdout + probe.stderr
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                 "tests/test_coverage.py", "tests/test_shard.py", "tests/test_builtin.py",
                 "tests/test_policy.py", "tests/test_scenario.py",
                 "tests/test_docs_ci.py::test_the_doc_embeds_every_example_file_verbatim"],
                cwd=unpacked, timeout=600, PYTHONPATH=str(unpacked))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


def test_version_from_the_command_and_python_m(install: Install, project: Path) -> None:
    expected = f"downgrade-lab {downgrade_lab.__version__}\n"
    for argv in ([str(install.bin / "downgrade-lab"), "--version"],
                 [str(install.bin / "python"), "-m", "downgrade_lab", "--version"]):
        done = _run(argv, cwd=project)
        assert (done.returncode, done.stdout, done.stderr) == (0, expected, ""), argv


def test_the_bundled_catalogue_against_the_reference_sender(install: Install, project: Path) -> None:
    done = _run([str(install.bin / "downgrade-lab"), "run", "--sender", "reference", "--json",
                 "out/all.json"], cwd=project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    record = json.loads((project / "out" / "all.json").read_text())
    assert record["summary"]["FAIL"] == record["summary"]["ERROR"] == 0, record["summary"]
    assert sorted(r["scenario"] for r in record["results"]) == IDS


def test_two_shards_and_their_merge_give_the_cells_of_one_run(install: Install,
                                                              project: Path) -> None:
    lab = str(install.bin / "downgrade-lab")
    for k in (1, 2):
        done = _run([lab, "run", "builtin/strip", "--shard", f"{k}/2", "--json", f"shard{k}.json"],
                    cwd=project)
        assert done.returncode in (0, 1), done.stderr[-2000:]  # opportunistic FAILs on purpose
    done = _run([lab, "run", "builtin/strip", "--json", "one.json"], cwd=project)
    assert done.returncode == 1, done.stderr[-2000:]
    merged = _run([lab, "merge", "shard1.json", "shard2.json", "--json", "merged.json",
                   "--junit", "merged.xml"], cwd=project)
    assert merged.returncode == 1, merged.stderr  # exit status as `run`'s: some cell FAILs
    assert _cells(project / "merged.json") == _cells(project / "one.json")
    assert {c[0] for c in _cells(project / "one.json")} == set(STRIP)
    one = _run([lab, "run", "builtin/strip"], cwd=project)
    assert merged.stdout.splitlines()[:len(STRIP) + 1] == one.stdout.splitlines()[:len(STRIP) + 1]


def test_the_pytest_plugin_on_the_bundled_strip_folder(install: Install, project: Path) -> None:
    done = _run([str(install.bin / "python"), "-m", "pytest", "--lab-scenarios", "builtin/strip",
                 "--lab-sender", "reference", "-p", "no:cacheprovider"], cwd=project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(STRIP)} passed" in done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout[-3000:]
    assert "builtin/strip::strip/starttls-enforce-warm[reference]" in _run(
        [str(install.bin / "python"), "-m", "pytest", "--lab-scenarios", "builtin/strip",
         "--lab-sender", "reference", "--co", "-q", "-p", "no:cacheprovider"], cwd=project).stdout


def test_the_docs_example_test_runs_as_is(install: Install, project: Path) -> None:
    example = ROOT / "docs" / "examples" / "test_my_sender.py"
    (project / example.name).write_text(example.read_text())
    done = _run([str(install.bin / "python"), "-m", "pytest", example.name, "-p",
                 "no:cacheprovider", "-W", "error"], cwd=project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout and "warning" not in done.stdout.lower(), done.stdout[-2000:]


def test_export_list_coverage_and_senders_stay_out_of_the_project(install: Install,
                                                                   project: Path) -> None:
    lab = str(install.bin / "downgrade-lab")
    done = _run([lab, "scenarios", "export", "mine"], cwd=project)
    assert done.returncode == 0, done.stderr
    bundled, copied = (_run([lab, "list", *path], cwd=project) for path in ([], ["mine"]))
    assert bundled.returncode == copied.returncode == 0
    assert bundled.stdout == copied.stdout and bundled.stdout.count("\n") == len(SCENARIOS)
    coverage = _run([lab, "coverage"], cwd=project)
    assert coverage.returncode == 0 and coverage.stdout.startswith("#"), coverage.stderr
    assert not (project / "docs").exists(), "coverage wrote into the user's project"
    data = project.parent / "data"
    senders = _run([lab, "senders"], cwd=project, DOWNGRADE_LAB_DATA=str(data))
    assert senders.returncode == 0, senders.stderr
    assert "site-packages" not in senders.stdout, senders.stdout
    exim = next(line for line in senders.stdout.splitlines() if line.startswith("exim"))
    assert "ready" in exim or str(data / "exim") in senders.stdout
    bad = _run([lab, "run", "builtin/nope"], cwd=project)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
