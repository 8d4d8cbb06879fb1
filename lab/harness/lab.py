"""`Lab`: builds and runs the services of one scenario (DESIGN §2, §3).

Loopback topology: every service on 127.0.0.1 with an ephemeral port. The MX names resolve to
127.0.0.1 and the port map sends the sender to the attacker's proxy listener for that MX; the
proxy forwards to the genuine receiver's listener for the same MX. So the attacker is always on
path, and an honest step is simply one where it changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec
from msgspec import Struct

from ..core.attackplan import proxy_attacks, spoofs_mx, upstreams
from ..core.evidence import gather, split
from ..core.model import Scenario, Step
from ..core.names import name_key
from ..core.policyserve import trickle_interval
from ..core.record import StepRecord
from ..core.recordparts import (
    Connection,
    DaneEvidence,
    DnsQuery,
    PolicyFetch,
    Received,
    TlsReport,
    TranscriptEntry,
)
from ..core.tlsrpt import mailboxes
from ..core.tlsrptcheck import tally
from ..core.verdict import Evidence, ReportSeen
from ..errors import LabError
from ..senders.base import Message, SendReport
from ..senders.env import LabEnv
from ..services.base import Service
from ..services.dns import ATTACKER_MX, DnsServer, build_zone
from ..services.mitm import ConnectionRecord, MitmProxy
from ..services.policyhost import PolicyHost
from ..services.receiver import Receiver, StoredMessage
from ..services.tlsrpt import TlsRptCollector, read_mailbox
from .pki import PKI
from .topology import LOOPBACK as LOOPBACK_TOPOLOGY
from .topology import Topology

if TYPE_CHECKING:
    from ..core.dnssec import LabKeys

LOOPBACK = "127.0.0.1"
POLL_S = 0.01
# The run record quotes what the attacker read, enough for a message body, not a mailbox.
ATTACKER_READ_MAX = 8 * 1024


def to_json(value: Any) -> Any:
    """Plain JSON values from service records (records, bytes, tuples)."""
    method = getattr(value, "to_json", None)
    if callable(method):
        return method()
    if isinstance(value, msgspec.Struct):
        return {name: to_json(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


class Lab:
    """An async context manager: `async with Lab(scenario) as lab:` then, per step,
    `await lab.prepare(step)`, let the sender deliver, and `lab.collect(...)`."""

    def __init__(self, scenario: Scenario, *, pki: PKI | None = None,
                 capture: bool = False, topology: Topology = LOOPBACK_TOPOLOGY) -> None:
        self.scenario = scenario
        self.capture = capture  # the wire bytes go into the record (for the pcap export)
        self.domain = scenario.domain
        self.topology = topology
        self._own_pki = pki is None
        self.pki = pki or PKI()
        hosts = scenario.mx_hosts()
        # Where every host listens and what DNS answers for it (lab/harness/topology.py).
        plan = self.plan = topology.plan(self.domain, hosts,
                                         ATTACKER_MX if spoofs_mx(scenario) else None)
        self.receiver = Receiver(self.pki, hosts, {self.domain}, bind_host=plan.receivers)
        self.policyhost = PolicyHost(self.pki, self.domain, bind_host=plan.policy.host,
                                     port=plan.policy.port)
        self.tlsrpt = TlsRptCollector(self.pki, self.domain, bind_host=plan.tlsrpt.host,
                                      port=plan.tlsrpt.port)
        self.dns = DnsServer(bind_host=plan.dns.host, port=plan.dns.port)
        self.proxy: MitmProxy | None = None
        # DNSSEC (DESIGN §9): fresh keys per lab, for scenarios with a [dane] table only
        # (the PKI's, shared by the labs of a run; imported only then)
        self.dnssec_keys: LabKeys | None = None
        if any(s.world.dane for s in scenario.steps):
            self.dnssec_keys = self.pki.dnssec_keys()
        self._started: list[Service] = []
        self._env: LabEnv | None = None
        self._dane: DaneEvidence | None = None  # the step's DNSSEC evidence (prepare())

    @property
    def env(self) -> LabEnv:
        if self._env is None:
            raise LabError("the lab is not running")
        return self._env

    async def start(self) -> None:
        try:
            for service in (self.receiver, self.policyhost, self.dns, self.tlsrpt):
                await service.start()
                self._started.append(service)
            relays = upstreams(self.scenario.mx_hosts(), list(self.plan.mx))
            listen = {h: (e.host, e.port) for h, e in self.plan.mx.items()}
            self.proxy = MitmProxy({h: self.receiver.addresses[genuine]
                                    for h, genuine in relays.items()},
                                   bind_host=LOOPBACK, pki=self.pki, listen=listen,
                                   capture=self.capture)
            await self.proxy.start()
            self._started.append(self.proxy)
        except BaseException:
            await self.stop()
            raise
        ports = {host: port for host, port in self.proxy.ports.items()}
        ports[f"mta-sts.{self.domain}"] = self.policyhost.port
        ports[f"tlsrpt.{self.domain}"] = self.tlsrpt.port  # the https: rua (RFC 8460 §5.4)
        addresses = dict(self.plan.addresses)
        self._addresses = addresses
        anchor = anchor_file = None
        if self.dnssec_keys is not None:
            anchor = self.dnssec_keys.anchor_text()
            anchor_file = self.pki.dir / "trust-anchor.txt"
            anchor_file.write_text(anchor)
        self._env = LabEnv(domain=self.domain, dns_host=self.plan.dns.host, dns_port=self.dns.port,
                           ca_file=self.pki.ca_file, ports=ports, host_addresses=addresses,
                           topology=self.topology.name, workdir=self.pki.dir,
                           trust_anchor=anchor, trust_anchor_file=anchor_file)

    async def stop(self) -> None:
        """Stop every service that started, in reverse order. Idempotent."""
        while self._started:
            await self._started.pop().stop()
        self._env = None
        if self._own_pki:
            self.pki.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def prepare(self, step: Step) -> None:
        """Set the world and the attacks for `step`, and forget what earlier steps recorded."""
        assert self.proxy is not None
        world = step.world
        self._dane = None
        if world.dane is not None and self.dnssec_keys is not None:
            from .danezone import dane_evidence, signed_zone

            zone = signed_zone(world, self._addresses, step.attacks("dns"), self.pki,
                               self.dnssec_keys)
            self._dane = dane_evidence(world, step.attacks("dns"), self.pki, self.dnssec_keys,
                                       zone)
            self.dns.set_zone(zone)
        else:
            self.dns.set_zone(build_zone(world, self._addresses, step.attacks("dns")))
        self.policyhost.configure(world.policy, step.attacks("policy"),
                                  trickle_s=trickle_interval(world.policy))
        self.receiver.configure(world.receiver)
        self.proxy.set_attacks(proxy_attacks(step))
        self.dns.take_queries()
        self.policyhost.take_requests()
        self.tlsrpt.take_reports()
        self.receiver.take_messages()
        self.proxy.take_records()

    async def wait_for(self, token: str, deadline: float) -> bool:
        """Wait until the genuine receiver stored a message carrying `token`, or `deadline`."""
        while not self.receiver.find(token):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    def _errors(self) -> str | None:
        problems = []
        for service in self._started:
            try:
                service.check()
            except LabError as exc:
                problems.append(str(exc))
        return "; ".join(problems) or None

    def collect(self, step: Step, message: Message, report: SendReport) -> Collected:
        """The evidence of one step, and what the run record shows of it."""
        assert self.proxy is not None
        messages = self.receiver.take_messages()
        mine, others = split(messages, message.token)
        connections = self.proxy.take_records()
        evidence = gather(messages, connections, token=message.token, sender_state=report.state,
                          sender_detail=report.detail, lab_error=self._errors())
        return Collected(evidence, tuple(received(m) for m in mine),
                         tuple(received(m) for m in others), self._traffic(connections),
                         self._dane_seen(step, connections))

    def _dane_seen(self, step: Step, connections: Sequence[ConnectionRecord]
                   ) -> DaneEvidence | None:
        """The step's DNSSEC evidence with the certificate each TLS handshake showed the
        sender: the receiver's (end-to-end TLS) or the attacker's (intercept-tls)."""
        if self._dane is None:
            return None
        from .danezone import certificate_shown

        hosts = set(self.scenario.mx_hosts())
        shown = []
        for i, c in enumerate(connections):
            for e in c.transcript:
                if e.kind != "event" or e.said not in ("tls-passthrough", "tls-intercepted"):
                    continue
                mx = name_key(c.mx)
                if e.said == "tls-passthrough":
                    if mx not in hosts:
                        continue  # a relay to another MX (spoof-mx): not this lab's host
                    by, variant = "receiver", step.world.receiver.cert
                else:
                    by = "attacker"
                    variant = next((a.cert or "self-signed" for a in step.attack
                                    if a.kind == "intercept-tls" and a.applies_to(mx)),
                                   "self-signed")
                shown.append(certificate_shown(self._dane, i, mx, by, variant, self.pki))
        return msgspec.structs.replace(self._dane, certificates=tuple(shown))

    def observe(self, earlier: Sequence[StoredMessage] = ()) -> Observation:
        """Everything recorded since `prepare()` (or the last take), with no message singled
        out, judged as one session (`earlier`: messages already taken from the receiver): what
        `downgrade-lab up` shows when its command ends."""
        stored = [*earlier, *self.receiver.take_messages()]
        connections = self.proxy.take_records() if self.proxy else []
        return Observation(gather(stored, connections), tuple(received(m) for m in stored),
                           self._traffic(connections),
                           tuple(TlsReport.from_json(r.to_json())
                                 for r in self.tlsrpt.take_reports()))

    def _traffic(self, connections: Sequence[ConnectionRecord]) -> Traffic:
        return Traffic(
            dns_queries=_queries(self.dns.take_queries()),
            policy_fetches=tuple(PolicyFetch.from_json(to_json(r))
                                 for r in self.policyhost.take_requests()),
            connections=tuple(Connection.from_json(_connection_json(c, self.capture))
                              for c in connections),
            transcript=_transcripts(connections),
        )

    def collect_reports(self, step: Step) -> Reports:
        """The TLS reports (RFC 8460) that arrived since `collect()`: POSTed to the collector or
        mailed to a `mailto:` of the step's TLS-RPT record (R-05), with the connections and DNS
        lookups their delivery made. Raises LabError if the collector itself failed."""
        assert self.proxy is not None
        self.tlsrpt.check()
        boxes = mailboxes(step.world.tlsrpt_records())
        messages = self.receiver.take_messages()
        arrived = self.tlsrpt.take_reports() + read_mailbox(messages, boxes)
        seen = []
        for r in arrived:
            counts = tally(r.report, step.world.domain)
            seen.append(ReportSeen(
                channel=r.channel, problems=r.problems, covers_domain=counts is not None,
                successes=counts.successes if counts else 0,
                failures=counts.failures if counts else 0,
                result_types=counts.result_types if counts else frozenset()))
        connections = self.proxy.take_records()
        return Reports(
            seen=tuple(seen),
            tlsrpt_reports=tuple(TlsReport.from_json(r.to_json()) for r in arrived),
            report_connections=tuple(Connection.from_json(_connection_json(c))
                                     for c in connections),
            report_transcript=_transcripts(connections),
            report_dns_queries=_queries(self.dns.take_queries()),
        )


class Traffic(Struct, frozen=True):
    """What the DNS, the policy host and the attacker's proxy recorded in one phase."""

    dns_queries: tuple[DnsQuery, ...] = ()
    policy_fetches: tuple[PolicyFetch, ...] = ()
    connections: tuple[Connection, ...] = ()
    transcript: tuple[TranscriptEntry, ...] = ()


class Collected(Struct, frozen=True):
    """`Lab.collect()`: the step's evidence and the record's parts for it."""

    evidence: Evidence
    received: tuple[Received, ...]  # copies of the step's message
    other_mail: tuple[Received, ...]  # what else the receiver stored
    traffic: Traffic
    dane: DaneEvidence | None = None  # steps with a [dane] table


class Reports(Struct, frozen=True):
    """`Lab.collect_reports()`: the reports as judged, and the record's parts for them."""

    seen: tuple[ReportSeen, ...]
    tlsrpt_reports: tuple[TlsReport, ...]
    report_connections: tuple[Connection, ...]
    report_transcript: tuple[TranscriptEntry, ...]
    report_dns_queries: tuple[DnsQuery, ...]


class Observation(Struct, frozen=True):
    """`Lab.observe()`: an `up` session, judged as one."""

    evidence: Evidence
    received: tuple[Received, ...]
    traffic: Traffic
    tlsrpt_reports: tuple[TlsReport, ...] = ()

    def to_json(self) -> dict[str, Any]:
        t = self.traffic
        return {"received": [m.to_json() for m in self.received],
                "dns_queries": [q.to_json() for q in t.dns_queries],
                "policy_fetches": [f.to_json() for f in t.policy_fetches],
                "connections": [c.to_json() for c in t.connections],
                "transcript": [e.to_json() for e in t.transcript],
                "tlsrpt_reports": [r.to_json() for r in self.tlsrpt_reports]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Observation:
        """From `to_json()` (the evidence is not in it: give it back empty)."""
        step = StepRecord.from_json(data)
        return cls(Evidence(), step.received,
                   Traffic(step.dns_queries, step.policy_fetches, step.connections,
                           step.transcript), step.tlsrpt_reports or ())


def received(m: StoredMessage) -> Received:
    return Received.from_json(stored_json(m))


def _queries(queries: Sequence[Any]) -> tuple[DnsQuery, ...]:
    return tuple(DnsQuery.from_json(to_json(q)) for q in queries)


def _transcripts(connections: Sequence[ConnectionRecord]) -> tuple[TranscriptEntry, ...]:
    return tuple(TranscriptEntry.from_json(entry)
                 for i, c in enumerate(connections) for entry in _transcript(c, i))


def stored_json(m: Any) -> dict[str, Any]:
    """A message the receiver stored, as the run record shows it (with its size)."""
    data = to_json(m)
    if isinstance(data, dict) and "data" in data:
        data["size"] = len(m.data)
    return dict(data)


def _connection_json(c: Any, capture: bool = False) -> dict[str, Any]:
    data = to_json(c)
    if isinstance(data, dict):
        data.pop("transcript", None)
        data.pop("client_plaintext", None)
        plain: bytes = c.client_plaintext
        data["attacker_read"] = plain[:ATTACKER_READ_MAX].decode("utf-8", "replace")
        data["attacker_read_bytes"] = len(plain)
        if capture:
            data["wire"] = [{"time": w.time, "direction": w.direction,
                             "data": base64.b64encode(w.data).decode()} for w in c.wire]
            data["wire_truncated"] = c.wire_truncated
    return dict(data)


def _transcript(c: Any, index: int) -> Iterable[dict[str, Any]]:
    for entry in c.transcript:
        row = to_json(entry)
        row["mx"] = c.mx
        row["connection"] = index  # into the step's "connections"
        yield row
