"""The pcap export: synthetic streams (unit), the proxy's bounded capture, and a real run
decoded by tshark."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from downgrade_lab.core.smtp import Relay
from downgrade_lab.errors import LabError
from downgrade_lab.frontends.cli import Environment, main
from downgrade_lab.frontends.report import pcap as pcap_module
from downgrade_lab.frontends.report.pcap import (
    ATTACKER_IP,
    RECEIVER_IP,
    SENDER_IP,
    pcap_path,
    step_packets,
    write_pcaps,
)
from downgrade_lab.services import mitm
from tests.reportrun import SCENARIOS, index_of, real_record


def chunk(t: float, direction: str, data: bytes) -> dict[str, Any]:
    return {"time": t, "direction": direction, "data": base64.b64encode(data).decode()}


def connection(*chunks: dict[str, Any], live: bool = False, continued: bool = False) -> dict[str, Any]:
    return {"mx": "mx1.example.test", "started": 10.0, "live": live, "continued": continued,
            "wire": list(chunks)}


DIALOGUE = (
    chunk(10.1, "receiver->attacker", b"220 mx1 ESMTP\r\n"),
    chunk(10.2, "attacker->sender", b"220 mx1 ESMTP\r\n"),
    chunk(10.3, "sender->attacker", b"EHLO s\r\n"),
    chunk(10.4, "attacker->receiver", b"EHLO s\r\n"),
    chunk(10.5, "receiver->attacker", b"250-mx1\r\n250 STARTTLS\r\n"),
    chunk(10.6, "attacker->sender", b"250 mx1\r\n"),
    chunk(10.7, "sender->attacker", b"x" * 4000),  # more than one segment
)


def streams(packets: list[Any]) -> dict[tuple[str, str], bytes]:
    """Payload per (source, destination), in packet order."""
    out: dict[tuple[str, str], bytes] = {}
    for p in packets:
        key = (p[IP].src, p[IP].dst)
        out[key] = out.get(key, b"") + bytes(p[TCP].payload)
    return out


def test_each_leg_is_a_tcp_stream_carrying_the_bytes_in_order() -> None:
    packets = step_packets({"connections": [connection(*DIALOGUE)]})
    got = streams(packets)
    assert got[(SENDER_IP, ATTACKER_IP)] == b"EHLO s\r\n" + b"x" * 4000
    assert got[(ATTACKER_IP, SENDER_IP)] == b"220 mx1 ESMTP\r\n250 mx1\r\n"
    assert got[(ATTACKER_IP, RECEIVER_IP)] == b"EHLO s\r\n"
    assert got[(RECEIVER_IP, ATTACKER_IP)] == b"220 mx1 ESMTP\r\n250-mx1\r\n250 STARTTLS\r\n"
    times = [float(p.time) for p in packets]
    assert times == sorted(times)
    # sequence numbers follow the bytes: each data packet starts where the last one ended
    expected: dict[tuple[str, str], int] = {}
    for p in packets:
        key, tcp = (p[IP].src, p[IP].dst), p[TCP]
        if key in expected:
            assert tcp.seq == expected[key], key
        expected[key] = tcp.seq + len(tcp.payload) + ("S" in tcp.flags) + ("F" in tcp.flags)
    assert {p[TCP].dport for p in packets if p[IP].dst != SENDER_IP and p[IP].src != RECEIVER_IP} == {25}


@pytest.mark.parametrize(("live", "continued", "syn", "fin"), [
    (False, False, True, True),
    (True, False, True, False),
    (False, True, False, True),
    (True, True, False, False),
], ids=["whole", "still-open", "continued", "middle"])
def test_handshakes_and_fins_only_where_the_step_saw_them(live: bool, continued: bool, syn: bool,
                                                          fin: bool) -> None:
    packets = step_packets({"connections": [connection(*DIALOGUE, live=live, continued=continued)]})
    assert any("S" in p[TCP].flags for p in packets) is syn
    assert any("F" in p[TCP].flags for p in packets) is fin


def test_a_record_made_without_capture_is_refused() -> None:
    conn = connection(*DIALOGUE)
    del conn["wire"]
    with pytest.raises(LabError, match="--pcap"):
        step_packets({"connections": [conn]})


@pytest.mark.parametrize(("scenario", "sender", "relative"), [
    ("strip/no-policy", "reference", "strip/no-policy/reference-step1.pcap"),
    ("../../etc/passwd", "a/b", "_/_/etc/passwd/a_b-step1.pcap"),
    ("x", "..", "x/_-step1.pcap"),
], ids=["normal", "traversal", "dots"])
def test_pcap_paths_stay_inside_the_directory(tmp_path: Path, scenario: str, sender: str,
                                              relative: str) -> None:
    assert pcap_path(tmp_path, scenario, sender, 1) == tmp_path / relative


# ---- the proxy's capture: cheap and bounded ----

def test_the_export_knows_every_direction_the_proxy_records() -> None:
    assert set(pcap_module._LEGS) == set(mitm.WIRE_DIRECTIONS)


def test_the_proxy_capture_keeps_order_and_stops_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mitm, "MAX_WIRE", 10)
    idle = mitm._Conn("mx1.example.test", Relay(), None)  # type: ignore[arg-type]
    idle.capture("sender->attacker", b"EHLO\r\n")
    assert idle.take().wire == ()  # a proxy that does not capture keeps nothing
    conn = mitm._Conn("mx1.example.test", Relay(), None, capture=True)  # type: ignore[arg-type]
    conn.capture("sender->attacker", b"EHLO\r\n")
    conn.capture("attacker->receiver", b"")  # nothing to keep
    conn.capture("attacker->sender", b"250 a-long-reply\r\n")  # over the bound: capture stops
    conn.capture("sender->attacker", b"QUIT")  # fits, but would leave a hole: dropped
    record = conn.take()
    assert [(w.direction, w.data) for w in record.wire] == [("sender->attacker", b"EHLO\r\n")]
    assert record.wire_truncated


# ---- a real run: the CLI writes the files, tshark reads them ----

TSHARK = shutil.which("tshark")


@pytest.fixture(scope="module")
def captured() -> dict[str, Any]:
    return real_record(capture=True)


@pytest.mark.e2e  # a real run through the lab
def test_every_step_gets_a_file(captured: dict[str, Any], tmp_path: Path) -> None:
    written = write_pcaps(captured, tmp_path)
    steps = sum(len(r["steps"]) for r in captured["results"])
    assert len(written) == steps == 6
    assert tmp_path / "strip/starttls-enforce-warm/opportunistic-step2.pcap" in written
    for path in written:
        assert rdpcap(str(path)), f"{path} is empty"


@pytest.mark.e2e  # a real run through the lab
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (.ci/run installs it)")
def test_tshark_shows_ehlo_and_the_stripped_starttls(captured: dict[str, Any], tmp_path: Path) -> None:
    write_pcaps(captured, tmp_path)
    assert index_of(captured, "strip/no-policy", "opportunistic") >= 0
    pcap = tmp_path / "strip/no-policy/opportunistic-step1.pcap"
    assert TSHARK is not None
    done = subprocess.run([TSHARK, "-r", str(pcap), "-Y", "smtp", "-T", "fields", "-E", "separator=|",
                           "-e", "ip.src", "-e", "ip.dst", "-e", "smtp.req.command",
                           "-e", "smtp.response.code", "-e", "smtp.rsp.parameter"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines()]
    commands = [r[2] for r in rows if r[0] == SENDER_IP]
    assert commands[:2] == ["EHLO", "MAIL"], "the sender said EHLO, then went on without TLS"
    assert "STARTTLS" not in commands
    ehlo_replies = {(r[0], r[1]): r[4] for r in rows if r[3] == "250" and "SIZE" in r[4]}
    assert "STARTTLS" in ehlo_replies[(RECEIVER_IP, ATTACKER_IP)], "the receiver offered it"
    assert "STARTTLS" not in ehlo_replies[(ATTACKER_IP, SENDER_IP)], "the sender never heard it"


@pytest.mark.e2e  # a real run through the lab
def test_the_cli_writes_html_pcap_and_json(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["run", str(SCENARIOS / "strip" / "no-policy.toml"), "--sender", "opportunistic",
            "--html", str(tmp_path / "r.html"), "--pcap", str(tmp_path / "pcap"),
            "--json", str(tmp_path / "r.json")]
    assert main(argv, Environment(stdout=out, stderr=err)) == 0, err.getvalue()
    assert "250-STARTTLS" in (tmp_path / "r.html").read_text()
    (pcap,) = (tmp_path / "pcap").rglob("*.pcap")
    assert pcap.name == "opportunistic-step1.pcap"
    record = json.loads((tmp_path / "r.json").read_text())
    (step,) = record["results"][0]["steps"]
    assert step["connections"][0]["wire"], "--pcap keeps the wire bytes in the record"
