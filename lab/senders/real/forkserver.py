"""A Python program imported once and forked for each start: `mta-sts-daemon` spends about
0.35 s of CPU importing aiohttp, aiodns and its own modules every time it starts, and the
isolated run starts one for every postfix-mta-sts pair (422 in the real catalogue, a third of
the real matrix's CPU).

The server is one process per run and per CA bundle, started with the program's own
interpreter (the `#!` line of its console script) and the environment of the first pair. It
imports the program's entry module and waits on its stdin. For each start it forks. The child
takes the pair's environment, argv and stderr file, and calls the program's own `main()`,
unmodified. Nothing runs in the server before the fork but the import: no event loop, no
thread, no cache, so every child starts cold, as a fresh process does. The one thing fixed at
import is what a module builds then: aiohttp's default SSL context reads SSL_CERT_FILE, so the
server is keyed by the CA bundle's bytes, and a run with another lab CA gets another server.

The server reaps its children; we see a child exit through a pidfd and stop it with SIGKILL
through the server, which waits for it (the port is free when `kill` returns). When our
process exits or dies, the server reads end-of-file, kills its children and exits.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import select
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import SenderError
from .base import one_line

# The server's source, run with `python -c` (the program's interpreter may not have us
# installed). Requests and replies are one JSON object per line.
SERVER = r"""
import json, os, signal, sys, traceback
__import__(sys.argv[1])
entry = getattr(sys.modules[sys.argv[1]], sys.argv[2])
requests, replies = sys.stdin, sys.stdout
children = set()

def start(req):
    pid = os.fork()
    if pid:
        children.add(pid)
        return {"pid": pid}
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(err, 2)
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = list(req["argv"])
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = entry()
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else (0 if code is None else 1))

def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    children.discard(pid)
    return {"code": os.waitstatus_to_exitcode(status)}

signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for our parent; EOF stops us
replies.write("{}\n")
replies.flush()
for line in requests:
    req = json.loads(line)
    reply = start(req) if "argv" in req else kill(req["kill"])
    replies.write(json.dumps(reply) + "\n")
    replies.flush()
for pid in list(children):
    kill(pid)
"""


def script_interpreter(script: str) -> str | None:
    """The Python interpreter named on the `#!` line of a console script, or None (not a
    Python script: it is then started the usual way)."""
    try:
        with open(script, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        words = words[1:]
    return words[0] if "python" in Path(words[0]).name else None


class ForkServer:
    """One server process: `spawn()` starts the program for a pair, `kill()` stops it."""

    def __init__(self, python: str, module: str, entry: str, env: Mapping[str, str]) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [python, "-c", SERVER, module, entry], env=dict(env), cwd="/",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self._ask_ready()

    def _ask_ready(self) -> None:
        assert self._proc.stdout is not None
        if self._proc.stdout.readline() == "":
            err = self._proc.stderr.read() if self._proc.stderr else ""
            self._proc.wait()
            self.close()
            why = one_line(err)
            raise SenderError(f"fork server exited with status {self._proc.returncode} at "
                              f"start{': ' + why if why else ''}")

    def _ask(self, request: dict[str, object]) -> dict[str, int]:
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except (BrokenPipeError, ValueError):
                line = ""
            if not line:
                raise SenderError("fork server is gone")
            reply: dict[str, int] = json.loads(line)
            return reply

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], stderr: Path) -> Forked:
        pid = self._ask({"argv": list(argv), "env": dict(env), "stderr": str(stderr)})["pid"]
        return Forked(self, pid)

    def kill(self, pid: int) -> int:
        return self._ask({"kill": pid})["code"]

    def close(self) -> None:
        """End of input: the server kills its children and exits; we wait for it."""
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


class Forked:
    """A program the server forked, with what `base.kill_and_wait` and `base.wait_port` use
    of a subprocess (`pid`, `returncode`, `send_signal`, `wait`)."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        """The exit status once the program has exited (without waiting), else None."""
        if self._code is None and self._pidfd >= 0:
            readable, _, _ = select.select([self._pidfd], [], [], 0)
            if readable:
                self._reap()
        return self._code

    def _reap(self) -> None:
        fd, self._pidfd = self._pidfd, -1
        os.close(fd)
        self._code = self._server.kill(self.pid)

    def send_signal(self, sig: int) -> None:
        if self._pidfd >= 0:
            signal.pidfd_send_signal(self._pidfd, sig)

    async def wait(self) -> int | None:
        """Wait for the exit (the pidfd turns readable), then reap through the server."""
        if self._code is None and self._pidfd >= 0:
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(self._pidfd, readable)
            try:
                await exited
            finally:
                loop.remove_reader(self._pidfd)
            await asyncio.to_thread(self._reap)
        return self._code


_SERVERS: dict[tuple[str, str, str, bytes], ForkServer] = {}


def spawn(python: str, module: str, entry: str, ca_file: Path, argv: Sequence[str],
          env: Mapping[str, str], stderr: Path) -> Forked:
    """`module:entry` started as `argv` with `env`, forked by this process's server for it
    under `python` with the CA bundle in `ca_file` (started with `env` on first use, closed at
    exit). Blocking: call it in a thread."""
    key = (python, module, entry, hashlib.sha256(ca_file.read_bytes()).digest())
    server = _SERVERS.get(key)
    if server is None or not server.alive:
        if server is not None:
            server.close()
        if not _SERVERS:
            atexit.register(close_all)
        server = _SERVERS[key] = ForkServer(python, module, entry, env)
    return server.spawn(argv, env, stderr)


def close_all() -> None:
    while _SERVERS:
        _, server = _SERVERS.popitem()
        server.close()
