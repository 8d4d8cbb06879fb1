"""`--isolate` (DESIGN §3): run the lab in new network, mount and PID namespaces.

The outer process prepares a private folder (resolv.conf, hosts, TMPDIR for everything the
run writes), then re-executes `python -m downgrade_lab ARGV` under `unshare`. The inner process calls
`enter()`: loopback up, a veth pair with one non-loopback address (glibc's
`getaddrinfo(AI_ADDRCONFIG)` returns nothing in a namespace that has only loopback), and the
private resolv.conf/hosts bind-mounted over /etc in its private mount namespace. Then it runs
the lab in the isolated topology (lab/harness/topology.py).

Why nothing is left behind: the namespaces live only as long as their processes; the inner
process forks and stays PID 1 of its own PID namespace (reaping the daemons that detach, such
as Postfix's master), and when the run ends the kernel kills whatever is left in it;
`--kill-child` makes `unshare` SIGKILL PID 1 if `unshare` itself dies; mounts made in a
private mount namespace vanish with it; and the outer process removes the private folder,
which holds every temp dir of the run (TMPDIR points there). Ctrl-C reaches the run through
the outer process, which waits for it to stop its senders.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import LabError
from .topology import ISOLATED_DNS

PACKAGE = __package__.partition(".")[0]  # the import name: `python -m PACKAGE` re-executes the CLI
INSIDE_VAR = "DOWNGRADE_LAB_ISOLATED"  # set only for the re-executed process: JSON, see run()
# The non-loopback address for AI_ADDRCONFIG: TEST-NET-1 (RFC 5737), never a real host, on a
# veth pair whose both ends stay inside the namespace; nothing is ever sent to it.
VETH_ADDRESS = "192.0.2.1/32"
VETH_NAMES = ("dgl0", "dgl1")
RESOLV_CONF = f"""# Downgrade Lab: the lab's DNS, and fail fast (a lab fault must not stall a sender)
nameserver {ISOLATED_DNS}
options timeout:1 attempts:2
"""
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
ROOT_UNSHARE = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child"]
# As a normal user: a user namespace mapping root to us and the rest to our subordinate ids
# (plain `unshare -r` maps only uid 0, and Postfix's chown to its own user then fails).
USER_UNSHARE = ["unshare", "--map-auto", "--map-root-user", *ROOT_UNSHARE[1:]]
STOP_GRACE_S = 15.0  # after Ctrl-C, how long the inner run may take to stop its senders


class Child(Protocol):
    """A process `wait_all` waits for: a `subprocess.Popen`, or a forked worker."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class IsolationError(LabError):
    """`--isolate` cannot work here; the message says what is missing."""


def inside() -> bool:
    """True in the process `run()` re-executed inside the namespaces."""
    return INSIDE_VAR in os.environ


def _namespaces() -> dict[str, str]:
    return {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "mnt")}


def unshare_command(euid: int | None = None) -> list[str]:
    """The `unshare` prefix for this user, or IsolationError saying what is missing."""
    if sys.platform != "linux":
        raise IsolationError("--isolate needs Linux network namespaces")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise IsolationError("--isolate needs `unshare` (util-linux) and `ip` (iproute2)")
    if (os.geteuid() if euid is None else euid) == 0:
        return list(ROOT_UNSHARE)
    missing = _rootless_missing()
    if missing:
        raise IsolationError(f"--isolate needs root, or user namespaces with {missing}")
    probe = subprocess.run([*USER_UNSHARE, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise IsolationError(f"--isolate needs root: user namespaces do not work here ({why})")
    return list(USER_UNSHARE)


def _rootless_missing() -> str:
    """What a rootless `--map-auto` namespace lacks here ('' if nothing seems to)."""
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if clone.exists() and clone.read_text().strip() == "0":
        return "kernel.unprivileged_userns_clone=1 (it is 0)"
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return "newuidmap/newgidmap (install the `uidmap` package)"
    import pwd

    try:  # the real user, whatever USER/LOGNAME say
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.split(":")[0] in (user, str(os.getuid())) for line in lines):
            return f"subordinate ids for {user!r} in {table} (usermod --add-subuids/--add-subgids)"
    return ""


def run(argv: Sequence[str], *, foreground: bool = False) -> int:
    """Re-execute `python -m downgrade_lab ARGV` inside new namespaces; return its exit status.

    `foreground` (`downgrade-lab up`): the inner run stays in the terminal's process group, so
    the shell or command it runs can read the terminal and gets Ctrl-C from it directly; this
    process ignores Ctrl-C and passes SIGTERM/SIGHUP on to the namespace's init."""
    prefix = unshare_command()
    folder = _private_folder()
    try:
        cmd, env = _command(prefix, folder, argv)
        if foreground:
            return _wait_foreground(subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent))
        return _wait(subprocess.Popen(cmd, env=env, process_group=0, preexec_fn=die_with_parent))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def started(argvs: Sequence[Sequence[str]], logs: Sequence[Path], *, isolated: bool = True,
            tmpdirs: Sequence[Path] = ()) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Re-execute `python -m downgrade_lab ARGV` for every ARGV at once, each in namespaces
    of its own (so each has the lab's fixed addresses and ports to itself; `isolated=False`:
    plain processes, for loopback runs on several cores), its output going to its log; the
    processes, for `wait_all`. Whatever is still running when the block ends is killed, and
    the private folders are removed. `tmpdirs`: the TMPDIR of each plain process (an isolated
    one writes below its private folder), so that what a killed one leaves (its PKI's keys)
    goes with the caller's folder."""
    prefix = unshare_command() if isolated else []
    folders = [_private_folder() for _ in argvs] if isolated else []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, (argv, log) in enumerate(zip(argvs, logs, strict=True)):
            if isolated:
                cmd, env = _command(prefix, folders[i], argv)
            else:
                cmd, env = [sys.executable, "-m", PACKAGE, *argv], dict(os.environ)
                if tmpdirs:
                    env["TMPDIR"] = str(tmpdirs[i])
            with log.open("wb") as out:
                procs.append(subprocess.Popen(cmd, env=env, process_group=0, stdout=out,
                                              stderr=subprocess.STDOUT,
                                              preexec_fn=die_with_parent))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _private_folder() -> Path:
    """The run's private folder: resolv.conf, hosts, and TMPDIR for all it writes."""
    # Short names: Postfix's unix sockets live below it, and their paths must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="dgl-", dir=_reachable_tmp()))
    folder.chmod(0o711)  # daemons that drop root (postfix, Debian-exim) traverse it
    tmp = folder / "t"
    tmp.mkdir(mode=0o711)
    tmp.chmod(0o711)
    (folder / "resolv.conf").write_text(RESOLV_CONF)
    (folder / "hosts").write_text(HOSTS)
    for name in ("resolv.conf", "hosts"):
        (folder / name).chmod(0o644)
    return folder


def _command(prefix: list[str], folder: Path, argv: Sequence[str]
             ) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env[INSIDE_VAR] = json.dumps({"folder": str(folder), "outer": _namespaces()})
    env["TMPDIR"] = str(folder / "t")
    return [*prefix, sys.executable, "-m", PACKAGE, *argv], env


def wait_all(procs: Sequence[Child], watch: Callable[[], None] | None = None, *,
             isolated: bool = True) -> list[int]:
    """`_wait` for several inner runs (or forked workers) at once, calling `watch` every
    50 ms. Ctrl-C, SIGTERM or SIGHUP stops every one with SIGTERM, which each handles as a
    clean stop whatever its SIGINT (ignored in a `cmd &` of a script): a plain worker's whole
    group gets it; in namespaces, the namespace's init does (`unshare` would die of it, and
    take the run along unstopped). Once stopped, every status is 130: the run as a whole was interrupted."""
    stop_at: float | None = None

    def on_term(signum: int, frame: object) -> None:
        handler = previous.get(signal.Signals(signum))
        if callable(handler):  # the CLI's: it notes which signal stopped the command
            handler(signum, frame)
        raise KeyboardInterrupt

    def stop(proc: Child) -> None:
        if not isolated:
            _signal_group(proc, signal.SIGTERM)
            return
        for pid in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous: dict[signal.Signals, Any] = {sig: signal.signal(sig, on_term)
                                           for sig in (signal.SIGTERM, signal.SIGHUP)}
    exits = _Exits(procs)
    try:
        while True:
            try:
                codes = [proc.poll() for proc in procs]
                if all(code is not None for code in codes):
                    if stop_at is not None:
                        return [130] * len(codes)
                    return [int(c or 0) for c in codes]
                if stop_at is not None and time.monotonic() > stop_at:
                    for proc in procs:
                        _signal_group(proc, signal.SIGKILL)
                if watch is not None:
                    watch()
                exits.wait(codes, 0.05)
            except KeyboardInterrupt:
                if stop_at is None:
                    stop_at = time.monotonic() + STOP_GRACE_S
                    for proc in procs:
                        stop(proc)
    finally:
        exits.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Exits:
    """Waiting for one of some processes to end, at most a while: on a pidfd for each (Linux
    5.3+), which is readable once its process has ended, so the last worker's end is seen at
    once rather than at the next 50 ms tick; a plain sleep where there is none."""

    def __init__(self, procs: Sequence[Child]) -> None:
        self._fds: list[int | None] = []
        for proc in procs:
            try:
                self._fds.append(os.pidfd_open(proc.pid))
            except (AttributeError, OSError):  # no pidfds here, or it has ended and been reaped
                self._fds.append(None)

    def wait(self, codes: Sequence[int | None], timeout: float) -> None:
        """Until one of the processes still running (`codes[i]` None) ends, or `timeout`."""
        fds = [fd for fd, code in zip(self._fds, codes, strict=True)
               if fd is not None and code is None]
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)

    def close(self) -> None:
        for fd in self._fds:
            if fd is not None:
                os.close(fd)
        self._fds = [None] * len(self._fds)


def _reachable_tmp() -> str:
    """TMPDIR if daemons that drop root can walk down to it (every ancestor searchable by
    others), else /tmp: a Postfix or Exim instance below a 0700 folder cannot start."""
    tmp = Path(tempfile.gettempdir()).resolve()
    if all(p.stat().st_mode & 0o001 for p in (tmp, *tmp.parents)):
        return str(tmp)
    return "/tmp"


def die_with_parent() -> None:
    """In a child (`unshare` before exec, or a forked worker): if this process dies (even by
    SIGKILL), the kernel kills the child; `unshare`'s `--kill-child` then takes the
    namespace's PID 1 and everything in it along."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for the inner run; Ctrl-C (or SIGTERM, SIGHUP) is passed on to it, then it gets
    STOP_GRACE_S to stop its senders before the whole namespace is killed."""
    stop_requested = False

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait(timeout=STOP_GRACE_S if stop_requested else None)
                return 130 if stop_requested and code < 0 else code
            except KeyboardInterrupt:
                if not stop_requested:
                    stop_requested = True
                    _signal_group(proc, signal.SIGINT)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
                return 130
    finally:
        _restore(previous, proc, lambda: _signal_group(proc, signal.SIGKILL))


def _wait_foreground(proc: subprocess.Popen[bytes]) -> int:
    """Wait for a foreground inner run (see `run`). `unshare` blocks SIGTERM and passes
    nothing on, so SIGTERM/SIGHUP go to its child, the namespace's init, which hands them to
    the run; STOP_GRACE_S later the whole namespace is killed."""
    deadline: list[float] = []

    def on_term(signum: int, frame: object) -> None:
        if not deadline:
            deadline.append(time.monotonic() + STOP_GRACE_S)
            for pid in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, on_term)
    try:
        while True:
            try:
                code = proc.wait(timeout=0.2)
                return shell_status(code)
            except subprocess.TimeoutExpired:
                if deadline and time.monotonic() > deadline[0]:
                    proc.kill()  # --kill-child: SIGKILL to the init, and the namespace is gone
                    proc.wait()
                    return 130
    finally:
        _restore(previous, proc, proc.kill)


def _restore(previous: dict[signal.Signals, Any], proc: subprocess.Popen[bytes],
             kill: Callable[[], None]) -> None:
    """The signal handlers as they were; and an inner run still going is killed and reaped."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    if proc.poll() is None:
        kill()
        proc.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def shell_status(code: int) -> int:
    """A shell's view of an exit status: 128 + N for a process killed by signal N."""
    return code if code >= 0 else 128 - code


def _signal_group(proc: Child, signum: int) -> None:
    # The group holds `unshare` (which blocks SIGINT while it waits) and the inner run.
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def enter() -> Path:
    """Inside the namespaces: set up the network and the resolver files. Returns the private
    folder. Refuses to touch anything unless it really is in namespaces of its own."""
    try:
        spec = json.loads(os.environ[INSIDE_VAR])
        folder, outer = Path(spec["folder"]), dict(spec["outer"])
    except (KeyError, ValueError, TypeError):
        raise IsolationError(f"{INSIDE_VAR} is set but malformed: not re-executed by --isolate?"
                             ) from None
    if any(outer.get(k) == v for k, v in _namespaces().items()):
        # Bind-mounting over /etc/resolv.conf in the host's mount namespace would break it.
        raise IsolationError(f"{INSIDE_VAR} is set but this process shares the caller's "
                             "namespaces: refusing to touch the network or /etc")
    a, b = VETH_NAMES
    _sh(["ip", "link", "set", "lo", "up"])
    _sh(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
    _sh(["ip", "addr", "add", VETH_ADDRESS, "dev", a])
    _sh(["ip", "link", "set", a, "up"])
    _sh(["ip", "link", "set", b, "up"])
    for name in ("resolv.conf", "hosts"):
        _sh(["mount", "--bind", str(folder / name), f"/etc/{name}"])
    _become_init()
    # SIGTERM (passed on by the init) stops the run as Ctrl-C does: senders stop cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return folder


def _become_init() -> None:
    """Fork: this process stays PID 1 of the namespace, reaping every orphan (daemons such as
    Postfix's master are re-parented to PID 1 when they detach) until the run, the child, ends;
    then it exits with the run's status, and the kernel kills whatever is left in the
    namespace. Returns only in the child."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        return
    # Ctrl-C reaches the run through the process group; the init only waits for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(child, signal.SIGTERM))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # cannot happen before the run ends; be safe
            os._exit(1)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(shell_status(code))


def _sh(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise IsolationError(f"namespace set-up failed: {' '.join(cmd)}: {why}")
