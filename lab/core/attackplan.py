"""Where a scenario's attacks land in the lab's world (DESIGN §3, §4 "Attacks"). Pure.

`spoof-mx` acts in two places: DNS points the MX at the attacker's own host (lab/core/dnszone.py),
and that host is one more listener of the on-path proxy, holding a certificate valid for its
own name, reading the mail and relaying it to the genuine receiver it displaced. The functions
here say what `Lab` (lab/harness/lab.py) builds for that, and how the run record spells an attack.
"""

from __future__ import annotations

from collections.abc import Sequence

from .dnszone import ATTACKER_MX
from .model import ATTACK_DEFAULTS, ATTACKS, Attack, Scenario, Step

# The option every attack table may carry; the others (`cert`, `how`) are the kind's options.
_EVERY_KIND = frozenset({"hosts"})


def spoofs_mx(scenario: Scenario) -> bool:
    """Whether any step spoofs the MX: then the lab plans a listener for the attacker's MX."""
    return any(a.kind == "spoof-mx" for step in scenario.steps for a in step.attack)


def upstreams(hosts: Sequence[str], listeners: Sequence[str]) -> dict[str, str]:
    """For every proxy listener, the genuine MX host whose receiver it relays to: each MX
    host to itself, the attacker's MX (when planned) to the first, the one it displaced."""
    out = {h: h for h in hosts}
    if ATTACKER_MX in listeners:
        out[ATTACKER_MX] = hosts[0]
    return out


def proxy_attacks(step: Step) -> tuple[Attack, ...]:
    """What the on-path proxy does in `step`: the step's proxy-layer attacks, and for each
    spoof-mx an interception at the attacker's MX with the spoof's certificate."""
    spoofed = tuple(Attack("intercept-tls", hosts=(ATTACKER_MX,),
                           cert=a.cert or ATTACK_DEFAULTS["spoof-mx"]["cert"])
                    for a in step.attacks("dns") if a.kind == "spoof-mx")
    return step.attacks("proxy") + spoofed


def shown_bare(attack: Attack) -> bool:
    """Whether the run record shows `attack` as its bare name: it names no hosts and its kind
    takes no option beyond `hosts` (`model.ATTACKS`). The others are shown as tables, since an
    option with a default (`cert`, `how`) always has a value."""
    return attack.hosts is None and not ATTACKS[attack.kind][1] - _EVERY_KIND
