"""`LabEnv`: what a sender under test needs to know about a running lab."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from msgspec import Struct, field

from ..core.names import name_key


class LabEnv(Struct, frozen=True):
    """Addresses and trust anchors of a running lab.

    In the loopback topology every lab host resolves to 127.0.0.1 and is told apart by port:
    `ports` maps a host name (MX names, `mta-sts.<domain>`, ...) to the TCP port where that
    host listens. Senders that accept a port map (the built-in ones) use it; real MTAs run in
    the isolated topology, where every host has its own address and real port.
    """

    domain: str
    dns_host: str
    dns_port: int
    ca_file: Path  # PEM bundle that trusts the lab CA (and nothing else)
    ports: Mapping[str, int] = field(default_factory=dict)
    host_addresses: Mapping[str, str] = field(default_factory=dict)  # host name -> IP
    topology: str = "loopback"
    workdir: Path | None = None  # private temp dir of the lab (0700)
    # DNSSEC (DESIGN §9): the lab root `test.`'s DS and DNSKEY as zone-file lines, and the file
    # holding them (unbound's trust-anchor-file format); None when the lab signs nothing.
    trust_anchor: str | None = None
    trust_anchor_file: Path | None = None

    def address(self, host: str, default_port: int) -> tuple[str, int]:
        """Where to connect for `host` (a lab name) on its service port."""
        name = name_key(host)
        ip = self.host_addresses.get(name, "127.0.0.1")
        return ip, self.ports.get(name, default_port)

    def port_for_ip(self, host: str, ip: str, default_port: int) -> int:
        """The port to use for `host` reached at `ip` (the port map, else `default_port`)."""
        return self.ports.get(name_key(host), default_port)
