"""DANE for SMTP (RFC 7672, RFC 7671, RFC 6698), pure: TLSA records, their usability, the
match against a server's certificate chain, and what a sender does with one MX host.

The ids (T-xx, X-01) are those of lab/core/conformance.py. Certificates are DER bytes; time
is a Unix timestamp given by the caller.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msgspec import Struct

from .model import Attack, World
from .model import Tlsa as DnssecTlsa
from .names import name_key
from .scenario import EVERY_MX

# RFC 6698 §7.2-7.4 registries. RFC 7672 §3.1.3 (T-10): PKIX-TA(0) and PKIX-EE(1) are unusable
# for SMTP; only DANE-TA(2) and DANE-EE(3) count.
USABLE_USAGES = frozenset({2, 3})
USAGE_NAMES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTORS = frozenset({0, 1})  # Cert, SPKI
MTYPES = {0: None, 1: "sha256", 2: "sha512"}  # Full, SHA2-256, SHA2-512
DIGEST_SIZES = {1: 32, 2: 64}


class Tlsa(Struct, frozen=True):
    """One TLSA record (RFC 6698 §2.1)."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def usable(r: Tlsa) -> bool:
    """RFC 7672 §3.1 (T-10, T-11): DANE-TA or DANE-EE, a known selector and matching type, and
    a digest of the right size (a malformed record is unusable, not a match-nothing)."""
    if r.usage not in USABLE_USAGES or r.selector not in SELECTORS or r.mtype not in MTYPES:
        return False
    return r.mtype == 0 or len(r.data) == DIGEST_SIZES[r.mtype]


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def association(cert_der: bytes, selector: int, mtype: int) -> bytes:
    """The certificate association data of `cert_der` for `selector` and `mtype`."""
    data = _selected(x509.load_der_x509_certificate(cert_der), selector)
    algorithm = MTYPES.get(mtype)
    return data if algorithm is None else hashlib.new(algorithm, data).digest()


def record_for(cert_der: bytes, usage: int, selector: int, mtype: int) -> Tlsa:
    """The TLSA record a domain publishes for `cert_der` (unknown selector or mtype: the record
    carries a SHA-256 of the whole certificate, so it is well-formed but unusable)."""
    if selector in SELECTORS and mtype in MTYPES:
        return Tlsa(usage, selector, mtype, association(cert_der, selector, mtype))
    return Tlsa(usage, selector, mtype, hashlib.sha256(cert_der).digest())


def _matches(r: Tlsa, cert: x509.Certificate) -> bool:
    algorithm = MTYPES[r.mtype]
    data = _selected(cert, r.selector)
    return (data if algorithm is None else hashlib.new(algorithm, data).digest()) == r.data


def _name_ok(cert: x509.Certificate, names: Sequence[str]) -> bool:
    """RFC 7672 §3.2.3: a DNS subjectAltName (a wildcard covers one left-most label) equals a
    reference identifier; the CN counts only without DNS names."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dnsnames = [name_key(n) for n in sans.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dnsnames = [str(a.value).lower() for a in
                    cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    for ref in (name_key(n) for n in names):
        for pattern in dnsnames:
            if pattern == ref:
                return True
            if pattern.startswith("*.") and "." in ref and ref.split(".", 1)[1] == pattern[2:]:
                return True
    return False


def _in_date(cert: x509.Certificate, now: float) -> bool:
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature, wrong key type, names
        return False
    return True


def authenticate(records: Sequence[Tlsa], chain_der: Sequence[bytes], names: Sequence[str],
                 now: float) -> str | None:
    """None if the server's chain (leaf first) matches a usable record, else why not.

    RFC 7672 §3.1.1 (T-08): DANE-EE(3) matches the leaf alone, with no name and no expiry
    check. §3.1.2 (T-09): DANE-TA(2) matches a certificate of the chain that issued the leaf
    (directly or through the chain), and the leaf must be in date and carry a name among the
    reference identifiers `names` (the MX host, and the next-hop domain)."""
    if not chain_der:
        return "the server showed no certificate"
    try:
        chain = [x509.load_der_x509_certificate(c) for c in chain_der]
    except ValueError as exc:
        return f"unreadable certificate: {exc}"
    leaf = chain[0]
    good = [r for r in records if usable(r)]
    if not good:
        return "no usable TLSA record"
    if any(r.usage == 3 and _matches(r, leaf) for r in good):
        return None
    why = "no TLSA record matches the certificate"
    for r in (r for r in good if r.usage == 2):
        for depth, ta in enumerate(chain):
            if not _matches(r, ta):
                continue
            path_ok = all(_issued_by(chain[i], chain[i + 1]) for i in range(depth))
            if depth == 0 or not path_ok:
                why = "DANE-TA: the matching certificate did not issue the server's"
                continue
            if not _in_date(leaf, now):
                why = "DANE-TA: the server certificate is not in date"
                continue
            if not _name_ok(leaf, names):
                why = f"DANE-TA: the certificate names none of {', '.join(names)}"
                continue
            return None
    return why


# What a DANE sender does with one MX host (RFC 7672 §2.2), from the security of the host's
# address records and of its TLSA lookup. Invariant: only a secure, non-empty TLSA RRset makes
# TLS mandatory; only a failed lookup makes the host unusable; everything else is pre-DANE.
PLANS = ("dane", "mandatory-tls", "no-dane", "unreachable")


class HostPlan(Struct, frozen=True):
    plan: str  # one of PLANS
    why: str
    records: tuple[Tlsa, ...] = ()


def plan_host(address_security: str, tlsa_security: str | None,
              records: Sequence[Tlsa] = ()) -> HostPlan:
    """`address_security`: of the host's A lookup; `tlsa_security`: of its TLSA lookup (None when
    not looked up). Security words as lab/core/dnsval.py."""
    if address_security in ("bogus", "indeterminate"):
        # RFC 7672 §2.2.2: an address lookup that fails leaves the host unusable (T-04)
        return HostPlan("unreachable", f"address lookup {address_security}")
    if address_security != "secure" or tlsa_security is None:
        # RFC 7672 §2.2.2 (T-03): TLSA records are looked up only for secure addresses
        return HostPlan("no-dane", "address records insecure: no TLSA lookup")
    if tlsa_security in ("bogus", "indeterminate"):
        # RFC 7672 §2.2 (T-04): the host must not be used; try the next one
        return HostPlan("unreachable", f"TLSA lookup {tlsa_security}")
    if tlsa_security != "secure":
        return HostPlan("no-dane", "TLSA records insecure: ignored (T-01)")
    if not records:
        return HostPlan("no-dane", "no TLSA records (secure denial, T-05)")
    if any(usable(r) for r in records):
        return HostPlan("dane", "usable TLSA records: authenticated TLS required (T-06)",
                        tuple(records))
    # RFC 7672 §2.2 / §3.1 (T-07): secure TLSA records, none usable: TLS all the same
    return HostPlan("mandatory-tls", "TLSA records, none usable: TLS required, no "
                    "authentication (T-07)", tuple(records))


# ---- what the lab publishes (the scenario's [dane] table, DESIGN §9) -----------------------------

CertLookup = Callable[[str, str], bytes]
"""(host, which) -> DER: `which` is "ca", "other" (a key no lab host serves), "attacker" (the
intercept-tls default certificate for `host`) or a receiver certificate kind ("valid", ...)."""


def published_tlsa(world: World, cert: CertLookup) -> dict[str, list[DnssecTlsa]]:
    """MX host -> the TLSA records the domain publishes for it: the host's own specs, else those
    given for every MX; a spec with `data` is published as written, else computed from the
    certificate it names (`genuine`: the receiver's own, of the scenario's kind)."""
    if world.dane is None:
        return {}
    table = dict(world.dane.tlsa)
    out: dict[str, list[DnssecTlsa]] = {}
    for host in world.dns.mx:
        specs = table.get(host, table.get(EVERY_MX))
        if not specs:
            continue
        records: list[DnssecTlsa] = []
        for s in specs:
            if s.data is not None:
                records.append((s.usage, s.selector, s.mtype, bytes.fromhex(s.data)))
                continue
            which = world.receiver.cert if s.cert == "genuine" else s.cert
            r = record_for(cert(host, which), s.usage, s.selector, s.mtype)
            records.append((r.usage, r.selector, r.mtype, r.data))
        out[host] = records
    return out


def forged_tlsa(world: World, attacks: Sequence[Attack],
                attacker_cert: Callable[[str, str], bytes]) -> dict[str, list[DnssecTlsa]]:
    """MX host -> the 3 1 1 record a `forge-tlsa` attack serves in place of the genuine one:
    the hash of the attacker's certificate (its `cert`, default self-signed) for that host."""
    return {h: [(3, 1, 1, record_for(attacker_cert(h, a.cert or "self-signed"), 3, 1, 1).data)]
            for a in attacks if a.kind == "forge-tlsa" for h in world.dns.mx if a.applies_to(h)}
