"""pcap export: what crossed the attacker, one capture per (scenario, sender, step).

Each proxied connection becomes two synthetic TCP streams to port 25, so Wireshark and tshark
decode them as SMTP:
  sender side:   the sender   SENDER_IP:(49152+2i)   -> the attacker   ATTACKER_IP:25
                 (what the sender said and what it heard)
  receiver side: the attacker ATTACKER_IP:(49153+2i) -> the receiver   RECEIVER_IP:25
                 (what the attacker relayed and what the genuine receiver said)
where i is the connection's index in the step's `connections`. Payloads and timestamps are the
proxy's own (`wire` in the run record, kept only when the run was made with `capture=True`,
i.e. `downgrade-lab run --pcap`). The addresses are documentation ranges (RFC 5737), not the
loopback ports the lab used. Handshakes, ACK numbers and FINs are synthesised; a connection
continued from an earlier step has no SYN. Inside TLS that the attacker terminated
(intercept-tls) the payload is the plaintext it read, not ciphertext: Wireshark expects TLS
after `220 Ready to start TLS` and labels it so; "Follow TCP Stream" shows the text.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from ...core.record import RunRecord, StepRecord, as_run, as_step
from ...core.recordparts import Connection, JSONObject
from ...errors import LabError

SENDER_IP = "192.0.2.10"  # RFC 5737 TEST-NET-1
ATTACKER_IP = "198.51.100.66"  # TEST-NET-2
RECEIVER_IP = "203.0.113.25"  # TEST-NET-3
LINKTYPE_RAW = 101  # packets start at the IP header: no made-up MAC addresses, and faster
SMTP_PORT = 25
FIRST_PORT = 49152  # RFC 6335 dynamic ports, like a real client's
SEGMENT = 1460  # payload bytes per packet: what fits an Ethernet MTU
TICK = 1e-6  # spacing of synthesised packets that share one recorded time

# direction -> (leg, from_client): which stream the bytes belong to and which end sent them.
_LEGS: dict[str, tuple[str, bool]] = {
    "sender->attacker": ("sender", True),
    "attacker->sender": ("sender", False),
    "attacker->receiver": ("receiver", True),
    "receiver->attacker": ("receiver", False),
}


class _Stream(Struct):
    """One synthetic TCP connection: addresses and each end's next sequence number."""
    client: tuple[str, int]
    server: tuple[str, int]
    seq: dict[bool, int] = field(default_factory=lambda: {True: 1000, False: 5000})
    packets: list[tuple[float, Any]] = field(default_factory=list)

    def emit(self, when: float, from_client: bool, flags: str, payload: bytes = b"") -> None:
        from scapy.layers.inet import IP, TCP

        (sip, sport), (dip, dport) = ((self.client, self.server) if from_client
                                      else (self.server, self.client))
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=self.seq[from_client],
                  ack=self.seq[not from_client] if "A" in flags else 0, window=65535)
        if payload:
            tcp.add_payload(payload)
        packet = IP(src=sip, dst=dip)
        packet.add_payload(tcp)  # not `/`, which copies both sides: half the export time
        packet.time = when
        self.packets.append((when, packet))
        # SYN and FIN each take one sequence number (RFC 9293 §3.4)
        self.seq[from_client] += len(payload) + ("S" in flags) + ("F" in flags)

    def open(self, when: float) -> None:
        self.seq[True] -= 1  # the SYN's number precedes the first byte
        self.seq[False] -= 1
        self.emit(when, True, "S")
        self.emit(when + TICK, False, "SA")
        self.emit(when + 2 * TICK, True, "A")

    def send(self, when: float, from_client: bool, data: bytes) -> None:
        for i in range(0, len(data), SEGMENT):
            self.emit(when + i // SEGMENT * TICK, from_client, "PA", data[i:i + SEGMENT])

    def close(self, when: float) -> None:
        self.emit(when, True, "FA")
        self.emit(when + TICK, False, "FA")
        self.emit(when + 2 * TICK, True, "A")


def connection_packets(index: int, connection: Connection | JSONObject) -> list[tuple[float, Any]]:
    """The packets of one connection record (its `wire` chunks), both legs, in time order."""
    if not isinstance(connection, Connection):
        connection = Connection.from_json(connection)
    if connection.wire is None:
        raise LabError("the run record holds no wire capture: run with --pcap (capture=True)")
    sender_port = FIRST_PORT + 2 * index
    legs = {"sender": _Stream((SENDER_IP, sender_port), (ATTACKER_IP, SMTP_PORT)),
            "receiver": _Stream((ATTACKER_IP, sender_port + 1), (RECEIVER_IP, SMTP_PORT))}
    chunks = connection.wire
    started = connection.started or (chunks[0].time if chunks else 0.0)
    used = {"sender"} | {_LEGS[c.direction][0] for c in chunks}
    if not connection.continued:
        for n, leg in enumerate(sorted(used, reverse=True)):  # the sender's leg opens first
            legs[leg].open(started + 3 * n * TICK)
    for chunk in chunks:
        leg, from_client = _LEGS[chunk.direction]
        legs[leg].send(chunk.time, from_client, base64.b64decode(chunk.data))
    if not connection.live:  # FINs after the last packet, split segments included
        last = max([started, *(when for stream in legs.values() for when, _ in stream.packets)])
        for n, leg in enumerate(sorted(used, reverse=True)):
            legs[leg].close(last + (3 * n + 1) * TICK)
    packets = [p for leg in legs.values() for p in leg.packets]
    packets.sort(key=lambda p: p[0])  # stable: same-time packets keep their order
    return packets


def step_packets(step: StepRecord | JSONObject) -> list[Any]:
    """Every packet of one step, in time order."""
    timed = [p for i, c in enumerate(as_step(step).connections) for p in connection_packets(i, c)]
    timed.sort(key=lambda p: p[0])
    return [packet for _, packet in timed]


def _safe(part: str) -> str:
    """A path component from a scenario id or sender name: no separators, no '..'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", part).lstrip(".")
    return cleaned or "_"


def pcap_path(out_dir: Path, scenario: str, sender: str, step: int) -> Path:
    """DIR/<scenario id as folders>/<sender>-step<N>.pcap (N from 1)."""
    parts = [_safe(p) for p in scenario.split("/") if p]
    return out_dir.joinpath(*parts, f"{_safe(sender)}-step{step}.pcap")


def write_pcaps(record: RunRecord | JSONObject, out_dir: Path) -> list[Path]:
    """One pcap per step of every result in `record` (a `RunRecord` made with capture on, or
    its JSON); returns the files written. A step where nothing crossed the attacker gets an
    empty capture, so every step has its file."""
    record = as_run(record)
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no banner noise on import
    from scapy.utils import PcapWriter

    written: list[Path] = []
    for result in record.results:
        for n, step in enumerate(result.steps, start=1):
            path = pcap_path(out_dir, result.scenario, result.sender, n)
            path.parent.mkdir(parents=True, exist_ok=True)
            packets = step_packets(step)
            writer = PcapWriter(str(path), linktype=LINKTYPE_RAW, sync=False)
            try:
                writer.write_header(None)
                _write_all(writer, packets)
            finally:
                writer.close()
            written.append(path)
    return written


def _write_all(writer: Any, packets: Iterable[Any]) -> None:
    for packet in packets:
        writer.write(packet)
