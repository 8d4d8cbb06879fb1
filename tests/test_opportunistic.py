"""The `opportunistic` sender and its DNS client against the lab's real DNS server and a real
receiver: port 0, real TLS, no mocks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import pytest
from dnslib import DNSLabel, DNSRecord

from downgrade_lab.core.dnsserve import serve
from downgrade_lab.core.model import DnsSpec, MessageSpec, ReceiverSpec, World
from downgrade_lab.harness.pki import PKI
from downgrade_lab.senders.base import Message, Sender, SendReport
from downgrade_lab.senders.builtin.dnsclient import DnsClient, LookupFailed, NoRecords, NxDomain
from downgrade_lab.senders.builtin.opportunistic import ATTEMPT_TIMEOUT_S, OpportunisticSender
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.services.dns import DnsServer, Zone, build_zone
from downgrade_lab.services.receiver import Receiver

DOMAIN = "example.test"
MX1, MX2 = "mx1.example.test", "mx2.example.test"
LOOPBACK = "127.0.0.1"


def world(mx: tuple[str, ...] = (MX1, MX2), **dns: object) -> World:
    return World(domain=DOMAIN, dns=DnsSpec(mx=mx, **dns),  # type: ignore[arg-type]
                 policy=None, receiver=ReceiverSpec(), message=MessageSpec())


@dataclass
class Net:
    pki: PKI
    receiver: Receiver
    dns: DnsServer

    def use(self, w: World) -> None:
        hosts = [*w.dns.mx, DOMAIN]
        self.dns.set_zone(build_zone(w, dict.fromkeys(hosts, LOOPBACK)))

    def env(self, **ports: int) -> LabEnv:
        """The lab env; `ports` (keys with `_` for `.`) override where a host listens."""
        table = {host: addr[1] for host, addr in self.receiver.addresses.items()}
        table.update({k.replace("_", "."): v for k, v in ports.items()})
        return LabEnv(domain=DOMAIN, dns_host=LOOPBACK, dns_port=self.dns.port,
                      ca_file=self.pki.ca_file, ports=table)


@pytest.fixture
def pki() -> Iterator[PKI]:
    with PKI() as p:
        yield p


@pytest.fixture
async def net(pki: PKI) -> AsyncIterator[Net]:
    # `example.test` itself gets a listener too: the implicit MX when there is no MX record.
    async with Receiver(pki, [MX1, MX2, DOMAIN], {DOMAIN}) as receiver, \
            DnsServer(bind_host=LOOPBACK) as dns:
        n = Net(pki, receiver, dns)
        n.use(world())
        yield n
        receiver.check()
        dns.check()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections: bound (so no one else gets it) but not listening."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        yield s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never says a word."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen(8)
        yield s.getsockname()[1]


async def send(env: LabEnv, deadline_s: float = 5.0, to: str = "bob@example.test"
               ) -> tuple[Message, SendReport]:
    sender = OpportunisticSender()
    await sender.start(env)
    message = Message.make(to)
    try:
        report = await sender.send(message, time.monotonic() + deadline_s)
    finally:
        await sender.stop()
    return message, report


def test_it_is_a_sender_without_mta_sts() -> None:
    sender = OpportunisticSender()
    assert isinstance(sender, Sender)
    assert sender.name == "opportunistic" and "mta-sts" not in sender.capabilities


async def test_starttls_offered_delivers_over_tls(net: Net) -> None:
    message, report = await send(net.env())
    assert report.state == "delivered", report
    assert report.detail.startswith(f"{MX1}: 250 ") and report.detail.endswith("over TLSv1.3")
    [stored] = net.receiver.find(message.token)
    assert (stored.mx, stored.tls, stored.sni) == (MX1, True, MX1)


@pytest.mark.parametrize("cert", ["expired", "wrong-name", "untrusted", "self-signed"])
async def test_any_certificate_is_trusted_the_vulnerable_default(net: Net, cert: str) -> None:
    net.receiver.configure(ReceiverSpec(cert=cert))
    message, report = await send(net.env())
    assert report.state == "delivered"
    assert net.receiver.find(message.token)[0].tls


async def test_no_starttls_delivers_in_plaintext(net: Net) -> None:
    net.receiver.configure(ReceiverSpec(starttls=False))
    message, report = await send(net.env())
    assert report.state == "delivered" and report.detail.endswith("in plaintext")
    assert not net.receiver.find(message.token)[0].tls


async def test_first_mx_down_second_gets_it(net: Net, refused_port: int) -> None:
    message, report = await send(net.env(mx1_example_test=refused_port))
    assert report.state == "delivered"
    first, second = report.extra["attempts"]
    assert (first["mx"], first["result"]) == (MX1, "connect-failed")
    assert (second["mx"], second["result"]) == (MX2, "delivered")
    assert [m.mx for m in net.receiver.find(message.token)] == [MX2]


async def test_no_mx_reachable_is_deferred_quickly(net: Net, refused_port: int) -> None:
    # A refused connection fails at once: the sender moves on instead of waiting out an
    # attempt's timeout (ATTEMPT_TIMEOUT_S per MX) or the deadline, both far above the bound.
    start = time.monotonic()
    _, report = await send(net.env(mx1_example_test=refused_port,
                                      mx2_example_test=refused_port), deadline_s=60)
    assert report.state == "deferred"
    assert time.monotonic() - start < ATTEMPT_TIMEOUT_S / 2
    assert net.receiver.messages == []


async def test_a_silent_mx_costs_no_more_than_the_deadline(net: Net, silent_port: int) -> None:
    # The deadline (0.5 s) ends both attempts, not ATTEMPT_TIMEOUT_S each (20 s for two MXs);
    # the bound leaves a loaded machine seconds of margin and still tells the two apart.
    start = time.monotonic()
    _, report = await send(net.env(mx1_example_test=silent_port,
                                      mx2_example_test=silent_port), deadline_s=0.5)
    assert report.state == "deferred" and "timed out" in report.detail
    assert time.monotonic() - start < ATTEMPT_TIMEOUT_S / 2


async def test_without_mx_the_domain_itself_is_the_mx(net: Net) -> None:
    net.use(world(mx=()))
    message, report = await send(net.env())
    assert report.state == "delivered"
    assert [m.mx for m in net.receiver.find(message.token)] == [DOMAIN]


async def test_a_5xx_bounces_without_trying_the_next_mx(net: Net) -> None:
    net.receiver.domains = frozenset({"other.test"})  # mail for example.test is now relaying
    _, report = await send(net.env())
    assert report.state == "bounced" and "550 5.7.1 Relaying denied" in report.detail
    assert len(report.extra["attempts"]) == 1


async def test_dns_failure_defers(net: Net) -> None:
    net.use(world(fault=((DOMAIN, "servfail"),)))
    _, report = await send(net.env())
    assert report.state == "deferred" and report.detail.startswith("DNS: ")
    assert net.receiver.messages == []


# -- the DNS client the built-in senders share --

@pytest.mark.parametrize(("w", "call", "name", "want"), [
    (world(mx=(MX2, MX1)), "resolve_mx", DOMAIN, [MX2, MX1]),  # preference order, not names
    (world(mx=(MX1,)), "resolve_mx", "EXAMPLE.TEST.", [MX1]),
    (world(), "resolve_a", MX1, [LOOPBACK]),
    (world(sts_txt=(("v=STSv1; ", "id=abc"),)), "resolve_txt", f"_mta-sts.{DOMAIN}",
     ["v=STSv1; id=abc"]),  # D-07: strings joined with no spaces
    (world(sts_txt=(("v=STSv1; id=a",), ("v=STSv1; id=b",))), "resolve_txt",
     f"_mta-sts.{DOMAIN}", ["v=STSv1; id=a", "v=STSv1; id=b"]),
    (world(sts_txt=(("v=STSv1; id=x",),), cname=((f"_mta-sts.{DOMAIN}", "sts.other.test"),)),
     "resolve_txt", f"_mta-sts.{DOMAIN}", ["v=STSv1; id=x"]),  # D-08: CNAME followed
], ids=["mx-order", "mx-case-dot", "a", "txt-joined", "txt-two", "txt-cname"])
async def test_dns_client_answers(net: Net, w: World, call: str, name: str,
                                  want: list[str]) -> None:
    net.use(w)
    got = await getattr(DnsClient(net.env()), call)(name)
    assert sorted(got) == sorted(want) if call == "resolve_txt" else got == want


@pytest.mark.parametrize(("fault", "name", "rdtype", "error"), [
    ((), f"nowhere.{DOMAIN}", "A", NxDomain),
    ((), MX1, "TXT", NoRecords),  # the name exists, no TXT there
    ((), f"_mta-sts.{DOMAIN}", "TXT", NoRecords),  # no policy: auto gives no record
    (((f"_mta-sts.{DOMAIN}", "nxdomain"),), f"_mta-sts.{DOMAIN}", "TXT", NxDomain),
    (((f"_mta-sts.{DOMAIN}", "servfail"),), f"_mta-sts.{DOMAIN}", "TXT", LookupFailed),
    (((f"_mta-sts.{DOMAIN}", "timeout"),), f"_mta-sts.{DOMAIN}", "TXT", LookupFailed),
    ((), "example.org", "A", LookupFailed),  # outside the lab: REFUSED
], ids=["nxdomain", "nodata", "no-sts", "fault-nxdomain", "servfail", "timeout", "refused"])
async def test_dns_client_errors(net: Net, fault: tuple[tuple[str, str], ...], name: str,
                                 rdtype: str, error: type[Exception]) -> None:
    net.use(world(fault=fault))
    client = DnsClient(net.env(), timeout=0.2, lifetime=0.4)
    call = {"A": client.resolve_a, "TXT": client.resolve_txt, "MX": client.resolve_mx}[rdtype]
    with pytest.raises(error) as info:
        await call(name)
    assert name in str(info.value)
    if error is LookupFailed:
        assert not isinstance(info.value, NoRecords)


async def test_dns_client_asks_again_over_tcp_when_the_answer_is_truncated(net: Net) -> None:
    records = tuple((f"v=STSv1; id={i:040d}",) for i in range(12))  # about 700 octets
    net.use(world(sts_txt=records))
    got = await DnsClient(net.env()).resolve_txt(f"_mta-sts.{DOMAIN}")
    assert sorted(got) == sorted(r[0] for r in records)
    queries = net.dns.take_queries()
    assert [(q.transport, q.note.startswith("truncated")) for q in queries] == [
        ("udp", True), ("tcp", False)]


@pytest.mark.parametrize("name", ["a..example.test", "x" * 64 + ".example.test"])
async def test_dns_client_refuses_a_name_no_question_can_carry(net: Net, name: str) -> None:
    with pytest.raises(LookupFailed, match="lookup failed"):
        await DnsClient(net.env()).resolve_a(name)
    assert net.dns.take_queries() == []  # nothing was sent


class _Noisy(asyncio.DatagramProtocol):
    """A UDP DNS server that answers every query from the lab's zone, but first sends what a
    client must not take for the answer: garbage, the answer with another id, an answer to
    another question, the query echoed back."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        out = serve(self.zone, data, "udp").out
        assert out is not None
        other = DNSRecord.parse(out)
        other.header.id ^= 1
        elsewhere = DNSRecord.parse(out)
        elsewhere.q.qname = DNSLabel("elsewhere.example.test")
        for junk in (b"\x00garbage", other.pack(), elsewhere.pack(), data):
            self.transport.sendto(bytes(junk), addr)
        self.transport.sendto(out, addr)


async def test_dns_client_takes_only_the_reply_to_its_question(net: Net) -> None:
    zone = build_zone(world(mx=(MX2, MX1)), dict.fromkeys([MX1, MX2, DOMAIN], LOOPBACK))
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Noisy(zone),
                                                       local_addr=(LOOPBACK, 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        env = LabEnv(domain=DOMAIN, dns_host=LOOPBACK, dns_port=port, ca_file=net.pki.ca_file,
                     ports={})
        assert await DnsClient(env).resolve_mx(DOMAIN) == [MX2, MX1]
    finally:
        transport.close()


# The client reads replies as dnspython's resolver does (it replaced it, docs/performance.md):
# the same lab zone, the same names, the same answer or the same kind of error from both.
AS_DNSPYTHON = [
    ((), DOMAIN, "MX"),
    ((), MX1, "A"),
    ((), f"_mta-sts.{DOMAIN}", "TXT"),
    ((), f"nowhere.{DOMAIN}", "A"),
    ((), MX1, "TXT"),
    ((), "example.org", "A"),
    (((f"_mta-sts.{DOMAIN}", "nxdomain"),), f"_mta-sts.{DOMAIN}", "TXT"),
    (((f"_mta-sts.{DOMAIN}", "servfail"),), f"_mta-sts.{DOMAIN}", "TXT"),
    (((DOMAIN, "timeout"),), DOMAIN, "MX"),
]


async def _dnspython(env: LabEnv, name: str, rdtype: str) -> list[str] | str:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(env.dns_host, env.dns_port)]
    resolver.cache = None
    try:
        answer = await resolver.resolve(name, rdtype, search=False, lifetime=0.4)
    except dns.resolver.NXDOMAIN:
        return "nxdomain"
    except dns.resolver.NoAnswer:
        return "no-records"
    except dns.exception.DNSException:
        return "failed"
    if rdtype == "MX":
        return [r.exchange.to_text().rstrip(".") for r in sorted(answer, key=lambda r: r.preference)]
    if rdtype == "TXT":
        return sorted(b"".join(r.strings).decode() for r in answer)
    return [r.address for r in answer]


async def _ours(env: LabEnv, name: str, rdtype: str) -> list[str] | str:
    client = DnsClient(env, timeout=0.2, lifetime=0.4)
    try:
        if rdtype == "MX":
            return await client.resolve_mx(name)
        if rdtype == "TXT":
            return sorted(await client.resolve_txt(name))
        return await client.resolve_a(name)
    except NxDomain:
        return "nxdomain"
    except NoRecords:
        return "no-records"
    except LookupFailed:
        return "failed"


@pytest.mark.parametrize(("fault", "name", "rdtype"), AS_DNSPYTHON,
                         ids=[f"{n}-{t}-{f[0][1] if f else 'plain'}" for f, n, t in AS_DNSPYTHON])
async def test_dns_client_answers_as_dnspython_does(net: Net, fault: tuple[tuple[str, str], ...],
                                                    name: str, rdtype: str) -> None:
    net.use(world(fault=fault, sts_txt=(("v=STSv1; ", "id=abc"),),
                  cname=((f"_mta-sts.{DOMAIN}", "sts.other.test"),) if not fault else ()))
    env = net.env()
    theirs, ours = await _dnspython(env, name, rdtype), await _ours(env, name, rdtype)
    assert ours == theirs
