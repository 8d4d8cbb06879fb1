"""The scenario's world as frozen values: what DNS, the policy host, the receiver and the
attacker do. Pure data, shared by the loader (`lab.scenario`), the services and the verdicts."""

from __future__ import annotations

import hashlib
from typing import Literal

from msgspec import Struct, field

from .names import name_key

# Outcome words of DESIGN §4. "delivered" is only ever an expectation: either delivered-* counts.
OUTCOMES = ("delivered-tls", "delivered-plaintext", "delivered", "not-delivered")
OBSERVABLE_OUTCOMES = ("delivered-tls", "delivered-plaintext", "not-delivered")
CERT_VARIANTS = ("valid", "expired", "wrong-name", "untrusted", "self-signed")
MODES = ("enforce", "testing", "none")
DNS_FAULTS = ("servfail", "nxdomain", "timeout")
BLOCK_HOWS = ("refused", "reset", "timeout")

# The attack registry: kind -> (where it acts, the table keys it accepts).
# Invariant: every kind acts in exactly one place; "proxy" attacks honour `hosts`.
ATTACKS: dict[str, tuple[str, frozenset[str]]] = {
    "strip-starttls": ("proxy", frozenset({"hosts"})),
    "reject-starttls": ("proxy", frozenset({"hosts"})),
    "corrupt-starttls": ("proxy", frozenset({"hosts"})),
    "intercept-tls": ("proxy", frozenset({"hosts", "cert"})),
    "inject-response": ("proxy", frozenset({"hosts"})),
    "spoof-mx": ("dns", frozenset({"hosts", "cert"})),
    "drop-sts-txt": ("dns", frozenset()),
    "drop-tlsrpt-txt": ("dns", frozenset()),
    "block-policy-fetch": ("policy", frozenset({"how"})),
    # DNSSEC / DANE (DESIGN §9, lab/core/dnssec.py): the attacker answers for DNS too, but
    # cannot sign. They act on signed labs only (a scenario with a [dane] table).
    "forge-tlsa": ("dns", frozenset({"hosts", "cert"})),  # TLSA of the attacker's cert, its own key
    "strip-rrsig": ("dns", frozenset({"hosts"})),  # RRSIGs removed (no hosts: the whole zone)
    "drop-tlsa": ("dns", frozenset({"hosts"})),  # TLSA removed, no valid denial
    "expire-rrsig": ("dns", frozenset({"hosts"})),  # the TLSA signature replayed, expired
    "remove-ds": ("dns", frozenset()),  # no DS at the parent, the child's signatures stripped
    "wrong-ds": ("dns", frozenset()),  # the attacker's DS and keys, unsigned by the parent
}
# The attacks that act on a signed zone (lab/core/dnssec.py applies them).
DANE_DNS_ATTACKS = frozenset({"forge-tlsa", "strip-rrsig", "drop-tlsa", "expire-rrsig",
                              "remove-ds", "wrong-ds"})
Tlsa = tuple[int, int, int, bytes]  # usage, selector, matching type, association data
ATTACK_DEFAULTS: dict[str, dict[str, str]] = {
    "intercept-tls": {"cert": "self-signed"},
    "spoof-mx": {"cert": "valid"},
    "block-policy-fetch": {"how": "refused"},
    "forge-tlsa": {"cert": "self-signed"},
}
# [dane] tlsa `cert`: whose certificate a TLSA record is computed from. genuine: the receiver's
# own (as its `receiver.cert` variant); ca: the lab CA (a DANE-TA trust anchor); other: a key
# nobody serves; attacker: the attacker's intercept certificate (self-signed).
TLSA_CERTS = ("genuine", "ca", "other", "attacker")
DS_STATES = ("valid", "missing", "wrong")


class TlsaSpec(Struct, frozen=True):
    usage: int = 3
    selector: int = 1
    mtype: int = 1
    cert: str = "genuine"
    data: str | None = None  # hex: publish these bytes as they are (malformed records)


class DaneSpec(Struct, frozen=True):
    """The `[dane]` table: DNSSEC for the lab zones and the TLSA records of the MX hosts."""

    dnssec: bool = True
    tlsa: tuple[tuple[str, tuple[TlsaSpec, ...]], ...] = ()  # (MX host, records)
    unsigned: tuple[str, ...] = ()  # zones left unsigned while the others are signed
    ds: str = "valid"  # valid | missing | wrong: the recipient zone's DS at the parent

TxtRecord = tuple[str, ...]  # one TXT record: its character-strings, joined by readers


class Attack(Struct, frozen=True):
    kind: str
    hosts: tuple[str, ...] | None = None  # None: every MX host
    cert: str | None = None  # intercept-tls / spoof-mx: the attacker's certificate
    how: str | None = None  # block-policy-fetch: refused | reset | timeout

    @property
    def layer(self) -> str:
        return ATTACKS[self.kind][0]

    def applies_to(self, host: str) -> bool:
        return self.hosts is None or name_key(host) in self.hosts

    def describe(self) -> str:
        extra = [f"{k}={v}" for k, v in (("cert", self.cert), ("how", self.how)) if v]
        if self.hosts is not None:
            extra.append("hosts=" + ",".join(self.hosts))
        return self.kind + (f"({', '.join(extra)})" if extra else "")


class DnsSpec(Struct, frozen=True):
    mx: tuple[str, ...]
    sts_txt: str | tuple[TxtRecord, ...] = "auto"  # "auto" or the records
    tlsrpt_txt: str | tuple[TxtRecord, ...] = "auto"
    cname: tuple[tuple[str, str], ...] = ()
    fault: tuple[tuple[str, str], ...] = ()


class PolicySpec(Struct, frozen=True):
    mode: str = "enforce"
    mx: tuple[str, ...] = ()
    max_age: int = 604800
    raw: str | None = None
    status: int = 200
    content_type: str = "text/plain"
    cert: str = "valid"
    delay_s: float = 0.0
    redirect: str | None = None
    pad_to: int = 0  # oversized body: pad with an unknown-key line placed first (F-06)
    trickle_s: float = 0.0  # send the body slowly, spread over this many seconds (F-06)

    def body(self) -> bytes:
        """The bytes the policy host serves (RFC 8461 §3.2 layout, CRLF line ends)."""
        return self._pad(self._text())

    def _pad(self, text: bytes) -> bytes:
        missing = self.pad_to - len(text)
        if missing <= 0:
            return text
        # An unknown key (P-03) before the real lines: a sender that truncates at its size cap
        # loses the policy lines rather than reading a plausible-looking prefix.
        filler = b"padding: " + b"x" * max(1, missing - len(b"padding: \r\n")) + b"\r\n"
        return filler + text

    def _text(self) -> bytes:
        if self.raw is not None:
            return self.raw.encode("utf-8")
        lines = ["version: STSv1", f"mode: {self.mode}"]
        lines += [f"mx: {mx}" for mx in self.mx]
        lines.append(f"max_age: {self.max_age}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    def auto_id(self) -> str:
        """The `id=` of the auto TXT record: changes whenever the served policy changes."""
        digest = hashlib.sha256(self.body() + f"|{self.status}|{self.content_type}".encode())
        return digest.hexdigest()[:16]


class ReceiverSpec(Struct, frozen=True):
    starttls: bool = True
    cert: str = "valid"


class MessageSpec(Struct, frozen=True):
    to: str = "bob@example.test"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def domain(self) -> str:
        return self.to.rpartition("@")[2].lower()


class World(Struct, frozen=True):
    """Everything the lab builds for one step."""

    domain: str
    dns: DnsSpec
    policy: PolicySpec | None
    receiver: ReceiverSpec
    message: MessageSpec
    dane: DaneSpec | None = None  # None: no DNSSEC, no TLSA (every scenario before DESIGN §9)

    @property
    def policy_host(self) -> str:
        return f"mta-sts.{self.domain}"

    @property
    def tlsrpt_host(self) -> str:
        return f"tlsrpt.{self.domain}"

    def sts_records(self) -> tuple[TxtRecord, ...]:
        if self.dns.sts_txt != "auto":
            assert not isinstance(self.dns.sts_txt, str)
            return self.dns.sts_txt
        if self.policy is None:
            return ()
        return ((f"v=STSv1; id={self.policy.auto_id()}",),)

    def tlsrpt_records(self) -> tuple[TxtRecord, ...]:
        if self.dns.tlsrpt_txt != "auto":
            assert not isinstance(self.dns.tlsrpt_txt, str)
            return self.dns.tlsrpt_txt
        rua = f"mailto:tlsrpt@{self.domain},https://{self.tlsrpt_host}/report"
        return ((f"v=TLSRPTv1; rua={rua}",),)


class Step(Struct, frozen=True):
    index: int
    world: World  # the world as it stands for this step (every earlier `set` applied)
    attack: tuple[Attack, ...] = ()
    expect: str = "delivered-tls"
    tolerate: tuple[str, ...] = ()
    because: str = ""
    after_s: float = 0.0  # advance the sender's clock by this much before the step
    # TLS-RPT (RFC 8460) result types the step's report must carry; () success only; False: no
    # report may arrive (no usable record, R-01); None: no check
    report: tuple[str, ...] | Literal[False] | None = None
    deadline_s: float = 10.0

    def attacks(self, layer: str) -> tuple[Attack, ...]:
        return tuple(a for a in self.attack if a.layer == layer)

    def stall_s(self) -> float:
        """How long the lab itself may keep a sender waiting in this step: a silent peer (a
        DNS `timeout` fault, a policy fetch blocked by `timeout`, a trickled body) may hold it
        for the whole deadline, a delayed policy host for its delay. 0: every part answers at
        once. Only an order hint for the workers (`selection.claim_order`), never a verdict."""
        policy = self.world.policy
        if (any(how == "timeout" for _, how in self.world.dns.fault)
                or any(a.kind == "block-policy-fetch" and a.how == "timeout" for a in self.attack)
                or (policy is not None and policy.trickle_s > 0)):
            return self.deadline_s
        return min(policy.delay_s, self.deadline_s) if policy is not None else 0.0


class Scenario(Struct, frozen=True):
    id: str
    path: str
    title: str
    summary: str = ""
    rfc: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def domain(self) -> str:
        return self.steps[0].world.domain

    def mx_hosts(self) -> tuple[str, ...]:
        """Every MX host any step of the scenario names, in first-seen order."""
        seen: dict[str, None] = {}
        for step in self.steps:
            for host in step.world.dns.mx:
                seen.setdefault(host, None)
        return tuple(seen)

    def certificates(self) -> tuple[tuple[str, str], ...]:
        """The (host, variant) certificates the scenario's lab presents to a sender that asks
        for the names it should, in first-seen order: every MX host in each step's receiver
        variant, the policy host in its policy's, the TLS-RPT collector's. Only a hint to have
        them made early (lab/harness/pki.py); anything else is made when it is asked for."""
        seen: dict[tuple[str, str], None] = {}
        for step in self.steps:
            world = step.world
            for host in world.dns.mx:
                seen.setdefault((name_key(host), world.receiver.cert), None)
            if world.policy is not None:
                seen.setdefault((world.policy_host, world.policy.cert), None)
            seen.setdefault((world.tlsrpt_host, "valid"), None)
        return tuple(seen)

    def needs(self) -> frozenset[str]:
        """Sender capabilities the scenario needs (a sender lacking one is SKIP)."""
        need = set()
        if any(step.after_s for step in self.steps):
            need.add("clock")
        return frozenset(need)
