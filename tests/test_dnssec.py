"""DNSSEC in the lab (DESIGN §9): signing (lab/core/dnssec.py), the validator
(lab/core/dnsval.py), and the DNS server answering with signatures when DO is set.

Every secure case sits beside the attack or misconfiguration that must make it bogus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dnslib
import pytest

from downgrade_lab.core import dnssec, dnsval
from downgrade_lab.core.dnszone import answer, build_zone, wire
from downgrade_lab.core.model import Attack, DnsSpec, MessageSpec, ReceiverSpec, World
from downgrade_lab.senders.builtin.dnssecclient import ValidatingResolver, _Signed
from downgrade_lab.senders.env import LabEnv
from downgrade_lab.services.dns import DnsServer
from tests.purity import imported_roots, loaded_by_importing

WORLD = World("example.test", DnsSpec(mx=("mx1.example.test", "mx.other.test")), None,
              ReceiverSpec(), MessageSpec())
ADDRESSES = {"mx1.example.test": "127.0.0.1", "mx.other.test": "127.0.0.1",
             "mta-sts.example.test": "127.0.0.1"}
TLSA = {"mx1.example.test": [(3, 1, 1, b"\x01" * 32)], "mx.other.test": [(3, 1, 1, b"\x03" * 32)]}
FORGED = {"mx1.example.test": [(3, 1, 1, b"\x02" * 32)]}
NOW = time.time()


@pytest.fixture(scope="module")
def keys() -> dnssec.LabKeys:
    return dnssec.LabKeys()


def signed(keys: dnssec.LabKeys, attacks: tuple[Attack, ...] = (), **dane: object) -> Any:
    zone = build_zone(WORLD, ADDRESSES, attacks)
    world = dnssec.DaneWorld("example.test", tlsa=TLSA, forged=FORGED, **dane)  # type: ignore[arg-type]
    return dnssec.sign(zone, keys, world, attacks, NOW)


def ask(zone: Any, name: str, rdtype: str, do: bool = True) -> dns.message.Message | None:
    q = dns.message.make_query(name, rdtype, want_dnssec=do)
    request = dnslib.DNSRecord.parse(q.to_wire())
    reply = answer(zone, request)
    return None if reply is None else dns.message.from_wire(bytes(wire(request, reply, "tcp")))


def validate(zone: Any, keys: dnssec.LabKeys, name: str, rdtype: str) -> dnsval.Lookup:
    steps = dnsval.lookup(dnsval.parse_anchor(keys.anchor_text()), name,
                          dns.rdatatype.from_text(rdtype), NOW)
    try:
        query = next(steps)
        while True:
            query = steps.send(ask(zone, query[0].to_text(), dns.rdatatype.to_text(dns.rdatatype.RdataType(query[1]))))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


TLSA1 = "_25._tcp.mx1.example.test."

# (id, attacks, dane options, name, type, expected security)
CASES = [
    ("mx-secure", (), {}, "example.test.", "MX", "secure"),
    ("tlsa-secure", (), {}, TLSA1, "TLSA", "secure"),
    ("nxdomain-proven", (), {}, "nope.example.test.", "A", "secure"),
    ("nodata-proven", (), {}, "mx1.example.test.", "TXT", "secure"),
    ("no-tlsa-proven", (), {}, "_25._tcp.mta-sts.example.test.", "TLSA", "secure"),
    ("ent-proven", (), {}, "_tcp.mx1.example.test.", "TLSA", "secure"),
    ("other-zone-secure", (), {}, "_25._tcp.mx.other.test.", "TLSA", "secure"),
    ("unsigned-is-insecure", (), {"dnssec": False}, TLSA1, "TLSA", "insecure"),
    ("one-zone-unsigned", (), {"unsigned": ("other.test",)}, "_25._tcp.mx.other.test.", "TLSA",
     "insecure"),
    ("others-stay-secure", (), {"unsigned": ("other.test",)}, TLSA1, "TLSA", "secure"),
    ("ds-missing-is-insecure", (), {"ds": "missing"}, TLSA1, "TLSA", "insecure"),
    ("ds-wrong-is-bogus", (), {"ds": "wrong"}, TLSA1, "TLSA", "bogus"),
    ("strip-rrsig", (Attack("strip-rrsig"),), {}, "example.test.", "MX", "bogus"),
    ("strip-rrsig-host", (Attack("strip-rrsig", hosts=("mx1.example.test",)),), {},
     "mx1.example.test.", "A", "bogus"),
    ("strip-rrsig-host-spares-mx", (Attack("strip-rrsig", hosts=("mx1.example.test",)),), {},
     "example.test.", "MX", "secure"),
    ("drop-tlsa", (Attack("drop-tlsa"),), {}, TLSA1, "TLSA", "bogus"),
    ("drop-tlsa-spares-others", (Attack("drop-tlsa", hosts=("mx1.example.test",)),), {},
     "nope.example.test.", "A", "secure"),
    ("expire-rrsig", (Attack("expire-rrsig"),), {}, TLSA1, "TLSA", "bogus"),
    ("forge-tlsa", (Attack("forge-tlsa", cert="self-signed"),), {}, TLSA1, "TLSA", "bogus"),
    ("remove-ds", (Attack("remove-ds"),), {}, "example.test.", "MX", "bogus"),
    ("wrong-ds", (Attack("wrong-ds"),), {}, "example.test.", "MX", "bogus"),
    ("remove-ds-unsigned-noop", (Attack("remove-ds"),), {"dnssec": False}, "example.test.", "MX",
     "insecure"),
]


@pytest.mark.parametrize(("attacks", "dane", "name", "rdtype", "security"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation(keys: dnssec.LabKeys, attacks: tuple[Attack, ...], dane: dict[str, object],
                    name: str, rdtype: str, security: str) -> None:
    result = validate(signed(keys, attacks, **dane), keys, name, rdtype)
    assert result.security == security, result.why


def validate_parsed(zone: Any, keys: dnssec.LabKeys, name: str, rdtype: str, now: float,
                    replies: dict[tuple[str, str], dns.message.Message | None]) -> dnsval.Lookup:
    """`validate`, each reply parsed once into `replies`: lookup after lookup the validator
    is handed the same objects, as the reference sender's client hands them over."""
    steps = dnsval.lookup(dnsval.parse_anchor(keys.anchor_text()), name,
                          dns.rdatatype.from_text(rdtype), now)
    try:
        query = next(steps)
        while True:
            q = (query[0].to_text(), dns.rdatatype.to_text(dns.rdatatype.RdataType(query[1])))
            if q not in replies:
                replies[q] = ask(zone, *q)
            query = steps.send(replies[q])
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


DAY = 86400
# (id, attacks of the second zone or None for the first one's replies again, when, security,
# why): what a validation remembered by identity must still decide
REMEMBERED = [
    ("the same replies again", None, NOW, "secure", ""),
    ("the same replies a second later", None, NOW + 1, "secure", ""),
    ("the same replies past their expiry", None, NOW + dnssec.LIFETIME_S + DAY, "bogus",
     "signature invalid"),
    ("the same replies before their inception", None, NOW - dnssec.SKEW_S - DAY, "bogus",
     "signature invalid"),
    ("a forged TLSA after the honest one", (Attack("forge-tlsa"),), NOW, "bogus",
     "signature invalid"),
    ("a stripped RRSIG after the honest one", (Attack("strip-rrsig"),), NOW, "bogus", "no RRSIG"),
]


@pytest.mark.parametrize(("attacks", "when", "security", "why"), [c[1:] for c in REMEMBERED],
                         ids=[c[0] for c in REMEMBERED])
def test_a_remembered_validation_decides_as_a_new_one(
        keys: dnssec.LabKeys, attacks: tuple[Attack, ...] | None, when: float, security: str,
        why: str) -> None:
    honest = signed(keys)
    replies: dict[tuple[str, str], dns.message.Message | None] = {}
    first = validate_parsed(honest, keys, TLSA1, "TLSA", NOW, replies)
    assert first.security == "secure", first.why
    zone = honest if attacks is None else signed(keys, attacks)
    again = validate_parsed(zone, keys, TLSA1, "TLSA", when,
                            replies if attacks is None else {})
    assert (again.security, why in again.why) == (security, True), again.why
    # and what a fresh validator, remembering nothing, says of the same
    dnsval._VERIFIED.clear()
    fresh = validate_parsed(zone, keys, TLSA1, "TLSA", when, {})
    assert (fresh.security, fresh.why) == (again.security, again.why)


def test_tlsa_data_is_served(keys: dnssec.LabKeys) -> None:
    result = validate(signed(keys), keys, TLSA1, "TLSA")
    assert [r.cert for r in result.rrset] == [b"\x01" * 32]  # type: ignore[union-attr]


def test_forged_tlsa_is_the_attackers(keys: dnssec.LabKeys) -> None:
    resp = ask(signed(keys, (Attack("forge-tlsa"),)), TLSA1, "TLSA")
    assert resp is not None
    assert [r.cert for r in resp.answer[0]] == [b"\x02" * 32]


@pytest.mark.parametrize(("do", "sigs"), [(True, True), (False, False)], ids=["do", "no-do"])
def test_signatures_only_with_do(keys: dnssec.LabKeys, do: bool, sigs: bool) -> None:
    resp = ask(signed(keys), "example.test.", "MX", do=do)
    assert resp is not None
    assert any(r.rdtype == dns.rdatatype.RRSIG for r in resp.answer) is sigs


@pytest.mark.parametrize(("name", "rdtype", "present"), [
    ("test.", "DNSKEY", True), ("example.test.", "DNSKEY", True), ("example.test.", "DS", True),
    ("other.test.", "DS", True), (TLSA1, "TLSA", True), ("example.test.", "NSEC", True),
    ("nope.example.test.", "DNSKEY", False),
], ids=lambda v: str(v))
def test_dnssec_types_answered(keys: dnssec.LabKeys, name: str, rdtype: str, present: bool) -> None:
    resp = ask(signed(keys), name, rdtype)
    assert resp is not None
    assert bool(resp.get_rrset(resp.answer, dns.name.from_text(name), dns.rdataclass.IN,
                               dns.rdatatype.from_text(rdtype))) is present


def test_ds_lives_in_the_parent(keys: dnssec.LabKeys) -> None:
    resp = ask(signed(keys), "example.test.", "DS")
    assert resp is not None
    sig = next(r for r in resp.answer if r.rdtype == dns.rdatatype.RRSIG)
    assert sig[0].signer == dns.name.from_text("test.")


def test_keys_are_fresh_per_lab() -> None:
    assert dnssec.LabKeys().anchor_ds() != dnssec.LabKeys().anchor_ds()


def test_another_anchor_is_bogus(keys: dnssec.LabKeys) -> None:
    other = dnssec.LabKeys()
    steps = dnsval.lookup(dnsval.parse_anchor(other.anchor_text()), "example.test.",
                          dns.rdatatype.MX, NOW)
    zone = signed(keys)
    try:
        query = next(steps)
        while True:
            query = steps.send(ask(zone, query[0].to_text(), dns.rdatatype.to_text(dns.rdatatype.RdataType(query[1]))))
    except StopIteration as done:
        assert done.value.security == "bogus"


def test_no_answer_is_indeterminate() -> None:
    steps = dnsval.lookup([], "example.test.", dns.rdatatype.MX, NOW)
    next(steps)
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert done.value.value.security == "indeterminate"


def test_unsigned_zones_outside_test_are_refused(keys: dnssec.LabKeys) -> None:
    world = World("example.com", DnsSpec(mx=("mx1.example.com",)), None, ReceiverSpec(),
                  MessageSpec())
    zone = build_zone(world, {"mx1.example.com": "127.0.0.1"})
    with pytest.raises(Exception, match="below test"):
        dnssec.sign(zone, keys, dnssec.DaneWorld("example.com"), (), NOW)


def test_core_modules_are_pure() -> None:
    for module in ("lab/core/dnssec.py", "lab/core/dnsval.py", "lab/core/dane.py"):
        assert not imported_roots(module) & {"asyncio", "socket", "ssl", "subprocess", "threading"}
    # dnspython and dnslib import socket for their constants, as lab/core/dnszone.py's test says
    assert not loaded_by_importing("downgrade_lab.core.dnssec", "downgrade_lab.core.dnsval",
                                   "downgrade_lab.core.dane", among=frozenset({"asyncio", "ssl"}))


# ---- the server and the resolver over real sockets --------------------------------------------

@pytest.mark.parametrize(("attacks", "security"), [((), "secure"),
                                                   ((Attack("strip-rrsig"),), "bogus")],
                         ids=["honest", "stripped"])
async def test_resolver_over_udp(keys: dnssec.LabKeys, attacks: tuple[Attack, ...],
                                 security: str, tmp_path: Path) -> None:
    async with DnsServer(signed(keys, attacks)) as server:
        env = LabEnv(domain="example.test", dns_host="127.0.0.1", dns_port=server.port,
                     ca_file=tmp_path / "ca.pem", trust_anchor=keys.anchor_text())
        resolver = ValidatingResolver(env)
        result = await resolver.lookup("mx1.example.test", "A", NOW)
        assert result.security == security, result.why
        q = dns.message.make_query("example.test.", "DNSKEY", want_dnssec=True)
        resp = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port, timeout=2)
        assert resp.flags & dns.flags.AA
        assert resp.ednsflags & dns.flags.DO


def _reply_to(query: dns.message.Message, **change: Any) -> bytes:
    reply = dns.message.make_response(query)
    for name, value in change.items():
        setattr(reply, name, value)
    return reply.to_wire()


# (id, bytes arriving for the question `example.test. MX`, read as its reply)
REPLIES = [
    ("its reply", lambda q: _reply_to(q), True),
    ("the same bytes under another ID", lambda q: _reply_to(q, id=(q.id + 1) % 65536), False),
    ("the question itself, not a response", lambda q: q.to_wire(), False),
    ("a reply to another question",
     lambda q: _reply_to(dns.message.make_query("example.test.", "TXT", id=q.id)), False),
    ("garbage under its ID", lambda q: q.to_wire()[:2] + b"\x81\x80\xff", False),
    ("nothing past the ID", lambda q: q.to_wire()[:2], False),
]


@pytest.mark.parametrize(("arriving", "taken"), [c[1:] for c in REPLIES],
                         ids=[c[0] for c in REPLIES])
def test_the_validating_client_takes_only_its_reply(arriving: Any, taken: bool) -> None:
    ask = _Signed((dns.name.from_text("example.test."), dns.rdatatype.MX))
    data = arriving(ask.query)
    got = ask.reply(data)
    assert (got is not None) == taken
    if taken:  # parsed once: the same bytes again are the same reply
        assert got is not None and ask.reply(data) is got
        assert got.question == ask.query.question


# ---- an independent validator: unbound, as the real DANE senders will use it ----------------

UNBOUND_CASES = [((), "NOERROR", True), ((Attack("strip-rrsig"),), "SERVFAIL", False),
                 ((Attack("drop-tlsa"),), "SERVFAIL", False),
                 ((Attack("forge-tlsa"),), "SERVFAIL", False),
                 ((Attack("expire-rrsig"),), "SERVFAIL", False),
                 ((Attack("wrong-ds"),), "SERVFAIL", False)]


@pytest.mark.parametrize(("attacks", "rcode", "ad"), UNBOUND_CASES,
                         ids=["honest", "strip-rrsig", "drop-tlsa", "forge-tlsa", "expire-rrsig",
                              "wrong-ds"])
async def test_unbound_agrees(keys: dnssec.LabKeys, attacks: tuple[Attack, ...], rcode: str,
                              ad: bool, tmp_path: Path) -> None:
    import socket

    import dns.flags
    import dns.rcode

    from downgrade_lab.senders.real import unbound

    if unbound.binary() is None:
        pytest.skip("unbound is not installed: `make real-setup` unpacks it into .real/unbound")
    anchor = tmp_path / "anchor"
    anchor.write_text(keys.anchor_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with DnsServer(signed(keys, attacks)) as server:
        env = LabEnv(domain="example.test", dns_host="127.0.0.1", dns_port=server.port,
                     ca_file=tmp_path / "ca.pem", trust_anchor_file=anchor)
        resolver = unbound.Unbound(env, ("127.0.0.1", port), tmp_path / "unbound")
        await resolver.start()
        try:
            q = dns.message.make_query(TLSA1, "TLSA", want_dnssec=True)
            resp = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)
        finally:
            await resolver.stop()
    assert dns.rcode.to_text(resp.rcode()) == rcode
    assert bool(resp.flags & dns.flags.AD) is ad
