"""Coverage-guided fuzzing of the lab's parsers with atheris (libFuzzer), for `make fuzz`.

    .venv/bin/python scripts/fuzz_atheris.py TARGET [libFuzzer options, e.g. -max_total_time=60]
    .venv/bin/python scripts/fuzz_atheris.py all --seconds 30     # each target in turn

Targets: sts-txt, tlsrpt-txt, policy, reply, relay, scenario, dns. Each feeds the fuzzer's
bytes to one parser and lets only the lab's own error for that phase through; anything else
is a crash, which libFuzzer reports with the input that caused it (out/fuzz/TARGET-crash-*).
Seeds come from the catalogue and from well-formed samples, so the search starts inside the
grammar. atheris is optional: without it this script says so and exits 0.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "out" / "fuzz"  # crash-* inputs, when libFuzzer finds one

try:
    import atheris
except ImportError:  # optional: `pip install atheris` (wheels for CPython 3.11 on x86-64 Linux)
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["lab", "dnslib"]):
        import dnslib

        from downgrade_lab.core.model import Attack
        from downgrade_lab.core.policy import PolicyError, join_strings, parse_txt_records, validate_fetch
        from downgrade_lab.core.scenario import parse_scenario
        from downgrade_lab.core.smtp import TRANSFORMS, Relay, Reply, SmtpError, StartPassthrough
        from downgrade_lab.core.tlsrpt import TlsRptError, parse_tlsrpt_records
        from downgrade_lab.errors import ScenarioError
        from downgrade_lab.services.dns import DnsServer, build_zone


def _records(data: bytes) -> list[list[bytes]]:
    # records separated by NUL, character-strings by 0x01: the fuzzer learns both
    return [part.split(b"\x01") for part in data.split(b"\x00")]


def sts_txt(data: bytes) -> None:
    try:
        parse_txt_records([join_strings(r) for r in _records(data)])
    except PolicyError:
        pass


def tlsrpt_txt(data: bytes) -> None:
    try:
        parse_tlsrpt_records([[s.decode("latin-1") for s in r] for r in _records(data)])
    except TlsRptError:
        pass


def policy(data: bytes) -> None:
    try:
        validate_fetch(200, "text/plain", data)
    except PolicyError:
        pass


def reply(data: bytes) -> None:
    try:
        parsed = Reply.parse(data.splitlines(True))
    except SmtpError:
        return
    for out in (parsed, parsed.without_keyword("STARTTLS"),
                parsed.with_keyword_renamed("STARTTLS", "XXXXXXXA")):
        if Reply.parse(out.encode().splitlines(True)) != out:
            raise AssertionError(f"{out!r} does not survive encode and parse")


KINDS = sorted(TRANSFORMS) if atheris is not None else []


def relay(data: bytes) -> None:
    """The first byte picks the attacks; then chunks: a length byte whose top bit says which
    side sent it. The relay must never raise, whatever the order."""
    if not data:
        return
    attacks = [Attack(k) for i, k in enumerate(KINDS) if data[0] >> i & 1]
    r = Relay(attacks[:2], mx_host="mx1.example.test")
    pos = 1
    while pos < len(data):
        head = data[pos]
        chunk = data[pos + 1:pos + 1 + (head & 0x7F)]
        pos += 1 + (head & 0x7F)
        out = r.receive_server(chunk) if head & 0x80 else r.receive_client(chunk)
        if any(isinstance(c, StartPassthrough) for c in out):
            return


def scenario(data: bytes) -> None:
    # load_scenario without the file: the same decode, TOML and validation steps
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    try:
        parse_scenario(doc, file="fuzz.toml", scenario_id="fuzz")
    except ScenarioError:
        pass


_SERVER: list[DnsServer] = []


def dns(data: bytes) -> None:
    if not _SERVER:
        from downgrade_lab.core.model import DnsSpec, MessageSpec, PolicySpec, ReceiverSpec, World
        world = World("example.test", DnsSpec(mx=("mx1.example.test",)),
                      PolicySpec(mx=("mx1.example.test",)), ReceiverSpec(), MessageSpec())
        _SERVER.append(DnsServer(build_zone(world, {"mx1.example.test": "127.0.0.1"})))
    server = _SERVER[0]
    out = server.respond(data, "udp")
    server.check()  # a handler error would be recorded, not raised: surface it
    server.take_queries()
    if out is not None and out[:2] != data[:2]:
        raise AssertionError("a response to another id")


def _seeds(target: str) -> list[bytes]:
    if target == "scenario":
        return [p.read_bytes() for p in sorted((ROOT / "scenarios").rglob("*.toml"))]
    if target == "policy":
        return [b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.example.test\r\n"
                b"max_age: 604800\r\n"]
    if target == "sts-txt":
        return [b"v=STSv1; id=20240101T000000", b"v=STSv1;\x01 id=abc;\x00v=STSv1; id=2"]
    if target == "tlsrpt-txt":
        return [b"v=TLSRPTv1; rua=mailto:tlsrpt@example.test,https://tlsrpt.example.test/report"]
    if target == "reply":
        return [b"250-mx1.example.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE 1000\r\n"]
    if target == "relay":
        return [b"\x01\x9c220 mx1.example.test ESMTP\r\n\x10EHLO sender.test\r\n"
                b"\xa9250-mx1.example.test\r\n250-STARTTLS\r\n250 HELP\r\n\x0aSTARTTLS\r\n"]
    if target == "dns":
        q = dnslib.DNSRecord.question("_mta-sts.example.test", "TXT")
        return [bytes(q.pack()), bytes(dnslib.DNSRecord.question("example.test", "MX").pack())]
    return []


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sts-txt": sts_txt, "tlsrpt-txt": tlsrpt_txt, "policy": policy, "reply": reply,
    "relay": relay, "scenario": scenario, "dns": dns,
}


def child(target: str, corpus: str, args: list[str]) -> None:
    atheris.Setup([sys.argv[0], *args, corpus], TARGETS[target])
    atheris.Fuzz()  # libFuzzer ends the process


def fuzz(target: str, args: list[str]) -> int:
    """One target in a child process (libFuzzer exits when done), seeded from a temp corpus."""
    if not any(a.startswith("-artifact_prefix=") for a in args):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        args = [*args, f"-artifact_prefix={ARTIFACTS}/{target}-"]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as corpus:
        for i, seed in enumerate(_seeds(target)):
            (Path(corpus) / f"seed{i}").write_bytes(seed)
        return subprocess.run([sys.executable, __file__, "--child", target, corpus, *args],
                              check=False).returncode


def main() -> int:
    if atheris is None:
        print("atheris is not installed: skipping the coverage-guided runs (pip install atheris)")
        return 0
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
        return 0
    if len(sys.argv) < 2 or sys.argv[1] not in (*TARGETS, "all"):
        print(__doc__)
        return 2
    target, rest = sys.argv[1], sys.argv[2:]
    if target != "all":
        return fuzz(target, rest)
    seconds = rest[rest.index("--seconds") + 1] if "--seconds" in rest else "30"
    failed = []
    for name in TARGETS:
        print(f"== {name} ({seconds} s)", flush=True)
        if fuzz(name, [f"-max_total_time={seconds}", "-print_final_stats=1"]) != 0:
            failed.append(name)
    print("atheris: " + (f"crashes in {', '.join(failed)}" if failed else "no crash in any target"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
