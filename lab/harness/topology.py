"""Where each lab host lives (DESIGN §3): the loopback and isolated topologies. Pure.

- **loopback**: every service on 127.0.0.1 with an ephemeral port; DNS answers every lab name
  with 127.0.0.1 and senders that take a port map find the port there. No privileges, and many
  labs side by side.
- **isolated**: inside the lab's own network namespace (lab/harness/isolate.py) every host has its own
  127/8 address and its real port: DNS 127.0.0.53:53, the policy host 127.0.0.44:443, MX hosts
  127.0.1.N:25 in MX order, the attacker's own MX 127.0.2.1:25. 127/8 routes to `lo`, so no
  alias is needed, and `require_lab_address` still holds. An unmodified MTA then resolves
  through /etc/resolv.conf and connects to port 25 as it would on the internet. The ports are
  fixed, so one isolated namespace runs one lab at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct, field

from ..core.names import name_key
from ..errors import LabError

LOOPBACK_IP = "127.0.0.1"
DNS_PORT = 53
HTTPS_PORT = 443
SMTP_PORT = 25
# Isolated addresses. Mnemonic, and apart from 127.0.0.1, where the MTAs under test keep their
# own local listeners (postfix-mta-sts-resolver on 127.0.0.1:8461, say).
ISOLATED_DNS = "127.0.0.53"
ISOLATED_POLICY = "127.0.0.44"
ISOLATED_TLSRPT = "127.0.0.45"
ISOLATED_RECEIVERS = "127.0.0.26"  # the genuine receivers, behind the attacker's proxy
ISOLATED_MX_NET = "127.0.1."  # + 1, 2, ... in MX order
ISOLATED_ATTACKER_MX = "127.0.2.1"
MAX_MX_HOSTS = 250


class Endpoint(Struct, frozen=True):
    host: str
    port: int  # 0: ephemeral, read back after binding


class Plan(Struct, frozen=True):
    """Where the services of one lab listen, and what DNS says each name's address is."""

    dns: Endpoint
    policy: Endpoint
    tlsrpt: Endpoint  # the TLS-RPT collector's HTTPS endpoint (an https: rua)
    receivers: str  # bind address of the genuine receivers (ephemeral ports)
    mx: dict[str, Endpoint] = field(default_factory=dict)  # the proxy's listener per MX name
    addresses: dict[str, str] = field(default_factory=dict)  # A records: name -> IPv4


class Topology(Struct, frozen=True):
    name: str  # loopback | isolated
    summary: str

    @property
    def isolated(self) -> bool:
        return self.name == "isolated"

    def plan(self, domain: str, mx_hosts: Sequence[str], attacker_mx: str | None = None) -> Plan:
        """The plan for a lab of `domain` whose MX hosts are `mx_hosts`; `attacker_mx`: the
        name of the attacker's own MX (spoof-mx), if a step needs it."""
        names = [name_key(h) for h in mx_hosts]
        if attacker_mx:
            names.append(attacker_mx)
        policy_name, tlsrpt_name = f"mta-sts.{domain}", f"tlsrpt.{domain}"
        if not self.isolated:
            everything = [*names, policy_name, tlsrpt_name]
            return Plan(dns=Endpoint(LOOPBACK_IP, 0), policy=Endpoint(LOOPBACK_IP, 0),
                        tlsrpt=Endpoint(LOOPBACK_IP, 0), receivers=LOOPBACK_IP,
                        mx={n: Endpoint(LOOPBACK_IP, 0) for n in names},
                        addresses=dict.fromkeys(everything, LOOPBACK_IP))
        if len(mx_hosts) > MAX_MX_HOSTS:
            raise LabError(f"the isolated topology has addresses for {MAX_MX_HOSTS} MX hosts, "
                           f"the scenario names {len(mx_hosts)}")
        mx = {n: Endpoint(f"{ISOLATED_MX_NET}{i + 1}", SMTP_PORT) for i, n in enumerate(names)
              if n != attacker_mx}
        if attacker_mx:
            mx[attacker_mx] = Endpoint(ISOLATED_ATTACKER_MX, SMTP_PORT)
        addresses = {n: e.host for n, e in mx.items()}
        addresses[policy_name] = ISOLATED_POLICY
        addresses[tlsrpt_name] = ISOLATED_TLSRPT
        return Plan(dns=Endpoint(ISOLATED_DNS, DNS_PORT),
                    policy=Endpoint(ISOLATED_POLICY, HTTPS_PORT),
                    tlsrpt=Endpoint(ISOLATED_TLSRPT, HTTPS_PORT),
                    receivers=ISOLATED_RECEIVERS, mx=mx, addresses=addresses)


LOOPBACK = Topology("loopback", "every service on 127.0.0.1, ephemeral ports")
ISOLATED = Topology("isolated", "a private network namespace: own addresses, ports 53/443/25")
TOPOLOGIES = {t.name: t for t in (LOOPBACK, ISOLATED)}


def get(name: str) -> Topology:
    try:
        return TOPOLOGIES[name]
    except KeyError:
        raise LabError(f"unknown topology {name!r} (known: {', '.join(TOPOLOGIES)})") from None
