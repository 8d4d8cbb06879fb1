"""The lab is a security tool and must not become an open relay or a leak (issue 6). Each
property in one place, asserted by calling into the services; the per-service test files hold
their own cases, which this file completes rather than repeats.

- Every service binds loopback only (127/8 and ::1, which the isolated namespace uses too).
- The receiver takes mail for the scenario's domain only, and has no code that connects out.
- The proxy forwards only to loopback upstreams, and a lab points it at its receivers only.
- Keys: tests/test_teardown.py (0600 in a 0700 dir, gone at stop and at exit).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosmtplib
import pytest

from downgrade_lab.core.scenario import discover
from downgrade_lab.errors import ServiceError
from downgrade_lab.harness.lab import Lab
from downgrade_lab.harness.pki import PKI
from downgrade_lab.services import receiver as receiver_module
from downgrade_lab.services.base import Service
from downgrade_lab.services.dns import DnsServer
from downgrade_lab.services.mitm import MitmProxy
from downgrade_lab.services.policyhost import PolicyHost
from downgrade_lab.services.receiver import Receiver
from downgrade_lab.services.tlsrpt import TlsRptCollector
from tests.events import inet_sockets

ROOT = Path(__file__).resolve().parent.parent
MX1 = "mx1.example.test"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    with PKI() as p:
        yield p


SERVICES: dict[str, Callable[[PKI, str], Service]] = {
    "dns": lambda pki, host: DnsServer(bind_host=host),
    "policyhost": lambda pki, host: PolicyHost(pki, "example.test", bind_host=host),
    "receiver": lambda pki, host: Receiver(pki, [MX1], {"example.test"}, bind_host=host),
    "tlsrpt": lambda pki, host: TlsRptCollector(pki, "example.test", bind_host=host),
    "mitm": lambda pki, host: MitmProxy({MX1: ("127.0.0.1", 25)}, bind_host=host),
    "mitm-listen": lambda pki, host: MitmProxy({MX1: ("127.0.0.1", 25)}, listen={MX1: (host, 0)}),
}
OUTSIDE = ["0.0.0.0", "192.0.2.1", "10.0.0.1", "::", "fe80::1", "::ffff:127.0.0.1", "localhost", ""]


@pytest.mark.parametrize("host", OUTSIDE)
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_no_service_binds_outside_loopback(pki: PKI, service: str, host: str) -> None:
    with pytest.raises(ServiceError, match="loopback|not an IP address"):
        s = SERVICES[service](pki, host)  # refused here, or at the latest in start()
        try:
            await s.start()
        finally:
            await s.stop()


async def bound_hosts(service: Service) -> set[str]:
    """The addresses of the sockets `service` holds once started, as the kernel reports them;
    checks too that stopping it closes every one."""
    before = set(inet_sockets())
    async with service:
        opened = {inode: s for inode, s in inet_sockets().items() if inode not in before}
    assert opened, f"{service.name} holds no socket"
    await asyncio.sleep(0)  # one turn of the loop: a datagram transport closes in a callback
    assert not set(inet_sockets()) & set(opened), f"{service.name} left sockets open after stop()"
    return {s.host for s in opened.values()}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])  # the isolated topology's 127/8 too
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_every_service_binds_loopback(pki: PKI, service: str, host: str) -> None:
    assert await bound_hosts(SERVICES[service](pki, host)) == {host}


class _Careless(Service):
    """A service that takes a bind address and ignores it: what the test above must catch."""

    name = "careless"

    def __init__(self, bind_host: str) -> None:
        super().__init__()
        self.bind_host = bind_host
        self._server: asyncio.Server | None = None

    async def _start(self) -> None:
        self._server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_a_service_that_ignores_its_bind_address_is_caught() -> None:
    assert await bound_hosts(_Careless("127.0.0.2")) == {"127.0.0.1"}  # != {"127.0.0.2"}


# ---- the receiver is no relay --------------------------------------------------------------------

@pytest.mark.parametrize(("rcpt", "accepted"), [
    ("bob@example.test", True),
    ("bob@EXAMPLE.TEST", True),
    ("bob@example.test.", False),  # aiosmtpd: 553 malformed address
    ('"bob@other.test"@example.test', True),  # a local part: stored here, never forwarded
    ("bob%other.test@example.test", True),  # the percent hack: a local part here, too
    ("bob@other.test", False),
    ("bob@sub.example.test", False),
    ("bob@example.test.other.test", False),
    ("bob@other.test@example.test.evil", False),
    ("@example.test:bob@other.test", False),  # a source route ends at other.test
    ("bob", False),
    ("bob@[127.0.0.1]", False),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_the_receiver_takes_mail_for_its_domain_only(pki: PKI, rcpt: str, accepted: bool) -> None:
    async with Receiver(pki, [MX1], {"example.test"}) as receiver:
        host, port = receiver.addresses[MX1]
        async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=5) as client:
            await client.ehlo(hostname="sender.test")
            await client.mail("alice@sender.test")
            code, message = await client.execute_command(f"RCPT TO:<{rcpt}>".encode())
        assert (code == 250) == accepted, (code, message)
        if not accepted:
            assert code >= 500  # refused for good, not "try later"
        receiver.check()


def test_the_receiver_has_no_code_that_connects_anywhere() -> None:
    """It cannot relay what it cannot send: no connect, no client, no socket of its own."""
    tree = ast.parse(inspect.getsource(receiver_module))
    names = {n.attr if isinstance(n, ast.Attribute) else n.id
             for n in ast.walk(tree) if isinstance(n, ast.Attribute | ast.Name)}
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                for a in n.names} | {n.module.split(".")[0] for n in ast.walk(tree)
                                     if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"open_connection", "create_connection", "connect", "sendmail",
                        "sendto", "socket"}
    assert not imported & {"smtplib", "aiosmtplib", "socket", "urllib", "aiohttp", "http"}


# ---- the proxy stays inside the lab --------------------------------------------------------------

@pytest.mark.parametrize("upstream", [
    ("mx1.example.test", 25), ("localhost", 25), ("::", 25), ("2001:db8::1", 25),
    ("169.254.169.254", 80), ("127.0.0.1", 0), ("127.0.0.1", 65536), ("127.0.0.1", -1),
], ids=lambda v: f"{v[0]}:{v[1]}")
def test_the_proxy_refuses_any_upstream_outside_the_lab(upstream: tuple[str, int]) -> None:
    with pytest.raises(ServiceError):
        MitmProxy({MX1: upstream})


@pytest.mark.timeout(120)
async def test_every_catalogue_lab_points_its_proxy_at_its_own_receivers_only(pki: PKI) -> None:
    for scenario in discover([ROOT / "scenarios"]):
        async with Lab(scenario, pki=pki) as lab:
            assert lab.proxy is not None
            receivers = set(lab.receiver.addresses.values())
            assert set(lab.proxy.upstreams.values()) <= receivers, scenario.id
            assert all(addr.startswith("127.") for addr, _ in receivers)
