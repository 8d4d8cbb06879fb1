"""Teardown (issue 6): a process that runs many labs ends with what it started with.

200 start/stop cycles of a lab in one process, each with a session through the proxy, leave no
open file descriptor, asyncio task, thread or temp dir behind; private keys are 0600 in a 0700
dir while a lab runs and gone when it stops, or when the process exits without stopping it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from downgrade_lab.core.model import Scenario
from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.harness.lab import Lab
from downgrade_lab.harness.pki import PKI

ROOT = Path(__file__).resolve().parent.parent
# spoof-mx: the most services and listeners a loopback lab has (two MX hosts, the attacker's)
SCENARIO = ROOT / "scenarios" / "spoof" / "mx-enforce-warm.toml"
CYCLES = 200


def scenario() -> Scenario:
    return load_scenario(SCENARIO)


def footprint(tmp: Path) -> dict[str, int]:
    gc.collect()  # a leak is what survives a collection, not what waits for one
    return {"fds": len(os.listdir("/proc/self/fd")), "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "temp dirs": len(list(tmp.glob("downgrade-lab-*")))}


async def cycle(s: Scenario, pki: PKI | None) -> None:
    """Start, prepare, greet one session through the proxy, stop."""
    async with Lab(s, pki=pki) as lab:
        await lab.prepare(s.steps[0])
        host = s.mx_hosts()[0]
        reader, writer = await asyncio.open_connection(*lab.env.address(host, 25))
        try:
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
            writer.write(b"QUIT\r\n")
            await asyncio.wait_for(reader.readline(), 5)
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.mark.timeout(120)
async def test_200_lab_cycles_leak_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the other xdist worker's dirs
    s = scenario()
    with PKI() as shared:
        for _ in range(3):  # lazy imports, caches and the first certificates
            await cycle(s, shared)
        before = footprint(tmp_path)
        for _ in range(CYCLES):
            await cycle(s, shared)
        assert footprint(tmp_path) == before
    assert footprint(tmp_path)["temp dirs"] == before["temp dirs"] - 1  # the shared PKI's


@pytest.mark.timeout(60)
async def test_labs_with_their_own_pki_leave_no_temp_dir_or_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    s = scenario()
    await cycle(s, None)
    before = footprint(tmp_path)
    for _ in range(20):
        await cycle(s, None)
    assert footprint(tmp_path) == before == {**before, "temp dirs": 0}


async def test_keys_are_private_while_the_lab_runs_and_gone_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    s = scenario()
    async with Lab(s) as lab:
        await lab.prepare(s.steps[0])
        workdir = lab.env.workdir
        assert workdir is not None and workdir.parent == tmp_path
        lab.pki.cert_files(s.mx_hosts()[0], "untrusted")  # a second CA's leaf as well
        keys = sorted(workdir.glob("*.key"))
        assert keys and {k.stat().st_mode & 0o777 for k in keys} == {0o600}
        assert workdir.stat().st_mode & 0o777 == 0o700
    assert not workdir.exists()
    assert list(tmp_path.iterdir()) == []


def test_keys_are_gone_when_the_process_exits_without_stopping(tmp_path: Path) -> None:
    """A run that crashes (or a script that forgets close()) still removes its keys at exit."""
    code = ("import sys; from downgrade_lab.harness.pki import PKI; p = PKI(sys.argv[1]); "
            "p.cert_files('mx1.example.test'); print(p.dir)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60, check=True)
    workdir = Path(out.stdout.strip())
    assert workdir.parent == tmp_path
    assert not workdir.exists()


# ---- out of file descriptors ---------------------------------------------------------------------

# Start one service with every file descriptor in use (`ulimit -n` reached, e.g. by a run with
# many jobs): asyncio's create_server then returns a server listening nowhere instead of raising.
# Prints the error start() raised, then whether closing our descriptors got back to the start.
OUT_OF_FDS = """
import asyncio, os, resource, sys
from downgrade_lab.errors import ServiceError
from downgrade_lab.harness.pki import PKI
from downgrade_lab.services.dns import DnsServer
from downgrade_lab.services.mitm import MitmProxy
from downgrade_lab.services.policyhost import PolicyHost
from downgrade_lab.services.receiver import Receiver
from downgrade_lab.services.tlsrpt import TlsRptCollector

BUILD = {
    "receiver": lambda pki: Receiver(pki, ["mx1.example.test"], {"example.test"}),
    "mitm": lambda pki: MitmProxy({"mx1.example.test": ("127.0.0.1", 25)}),
    "dns": lambda pki: DnsServer(),
    "tlsrpt": lambda pki: TlsRptCollector(pki, "example.test"),
    "policyhost": lambda pki: PolicyHost(pki, "example.test"),
}

async def main(kind):
    with PKI() as pki:
        service = BUILD[kind](pki)
        before = len(os.listdir("/proc/self/fd"))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            await service.start()
        except ServiceError as exc:
            print(exc)
        else:
            print("started")
            await service.stop()
        finally:
            for fd in held:
                os.close(fd)
        print(len(os.listdir("/proc/self/fd")) - before)

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))  # quick to use up
asyncio.run(main(sys.argv[1]))
"""
NO_SOCKET = "could not listen on 127.0.0.1 (no socket; out of file descriptors? see ulimit -n)"


@pytest.mark.parametrize(("service", "error"), [
    ("receiver", f"receiver: {NO_SOCKET}"),
    ("mitm", f"mitm: {NO_SOCKET}"),
    ("dns", f"dns: {NO_SOCKET}"),
    # the TLS-RPT collector reads its certificate first, which needs a descriptor too; the
    # policy host reads none when it starts (its SNI callback picks a cached one per handshake)
    ("tlsrpt", "tlsrpt: cannot load the certificate of tlsrpt.example.test: [Errno 24]"),
    ("policyhost", "policyhost: cannot open a socket for 127.0.0.1:0: [Errno 24]"),
])
def test_out_of_file_descriptors_is_a_service_error(service: str, error: str) -> None:
    done = subprocess.run([sys.executable, "-c", OUT_OF_FDS, service], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    message, leaked = done.stdout.splitlines()
    assert message.startswith(error), message
    assert leaked == "0"  # the failed start closed what it had opened
