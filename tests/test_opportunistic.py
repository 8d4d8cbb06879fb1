"""The `opportunistic` sender and its DNS client against the lab's real DNS server and a real
receiver: port 0, real TLS, no mocks."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from downgrade_lab.core.model import DnsSpec, MessageSpec, ReceiverSpec, World
from downgrade_lab.harness.pki import PKI
from downgrade_lab.senders.base import Message, Sender, SendReport
from downgrade_lab.senders.builtin.dnsclient import DnsClient, LookupFailed, NoRecords, NxDomain
from downgrade_lab.senders.builtin.opportunistic import ATTEMPT_TIMEOUT_S, OpportunisticSender
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.services.dns import DnsServer, build_zone
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
