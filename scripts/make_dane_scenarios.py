"""Write scenarios/dane/*.toml (issue 16): each scenario is three steps, the honest twin, the
attacked world and its no-DNSSEC twin (`dnssec = false`: the same TLSA records, unsigned, so a
DANE sender ignores them). Run from the repository root; the files are committed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

OUT = Path("scenarios/dane")
EE = '{usage = 3, selector = 1, mtype = 1, cert = "genuine"}'
TA = '{usage = 2, selector = 1, mtype = 1, cert = "ca"}'
NO_DANE = "without DNSSEC the TLSA records are not authenticated (T-01): pre-DANE delivery"

# name: (title, summary, rfc, tags, head (tables), honest set, attack, attacked set, expect,
#        no-dnssec expect, extra step keys)
S: list[dict[str, object]] = []


def add(name: str, title: str, summary: str, rfc: list[str], *, tlsa: str = f"[{EE}]",
        attack: str = "[]", expect: str = "not-delivered", twin: str = "delivered",
        dane_extra: str = "", head: str = "", attacked_set: str = "", honest_set: str = "",
        tolerate: str = "", because: str = "", tags: list[str] | None = None,
        report: str = "") -> None:
    S.append(dict(name=name, title=title, summary=summary, rfc=rfc, tlsa=tlsa, attack=attack,
                  expect=expect, twin=twin, dane_extra=dane_extra, head=head,
                  attacked_set=attacked_set, honest_set=honest_set, tolerate=tolerate,
                  because=because, tags=tags or [], report=report))


def render(s: dict[str, object]) -> str:
    rfc = ", ".join(f'"{r}"' for r in s["rfc"])  # type: ignore[attr-defined]
    tags = ", ".join(f'"{t}"' for t in ["dane", *cast(list[str], s["tags"])])
    lines = [f'title   = "{s["title"]}"', f'summary = """{s["summary"]}"""', f"rfc     = [{rfc}]",
             f"tags    = [{tags}]", ""]
    if s["head"]:
        lines += [str(s["head"]), ""]
    lines += ["[dane]", f"tlsa = {s['tlsa']}"]
    if s["dane_extra"]:
        lines.append(str(s["dane_extra"]))
    lines += ["", "[[step]]                     # the honest twin: nothing attacked",
              'expect = "delivered-tls"']
    if s["honest_set"]:
        lines.append(str(s["honest_set"]))
    if s["report"]:
        lines.append("report = []")
    lines += ["", "[[step]]", f"attack = {s['attack']}", f'expect = "{s["expect"]}"']
    if s["report"]:
        lines.append(f'report = ["{s["report"]}"]')
    if s["tolerate"]:
        lines += [f"tolerate = {s['tolerate']}", f'because = "{s["because"]}"']
    if s["attacked_set"]:
        lines.append(str(s["attacked_set"]))
    lines += ["", "[[step]]                     # the no-DNSSEC twin: the same, unsigned",
              f"attack = {s['attack']}", f'expect = "{s["twin"]}"', f'because = "{NO_DANE}"',
              "[step.set.dane]", "dnssec = false", ""]
    return "\n".join(lines)


ATT = "{kind = \"intercept-tls\", cert = \"%s\"}"
# --- DANE-EE(3): any downgrade is refused; the certificate's name and dates do not matter
add("ee-strip", "DANE-EE MX, STARTTLS stripped",
    "The MX publishes 3 1 1 for its own key under DNSSEC; the attacker deletes STARTTLS. A DANE "
    "sender must not fall back to plaintext.", ["T-06", "T-15"], attack='["strip-starttls"]',
    tags=["strip"])
add("ee-reject", "DANE-EE MX, STARTTLS refused with 454",
    "The attacker answers STARTTLS with 454. TLS is mandatory under usable TLSA records.",
    ["T-06", "T-15"], attack='["reject-starttls"]', tags=["strip"])
add("ee-corrupt", "DANE-EE MX, STARTTLS capability corrupted",
    "The attacker renames the capability. A DANE sender sends STARTTLS anyway or defers.",
    ["T-06"], attack='["corrupt-starttls"]', tags=["strip"])
for cert in ("self-signed", "wrong-name", "expired", "untrusted"):
    add(f"ee-intercept-{cert}", f"DANE-EE MX, TLS intercepted with a {cert} certificate",
        f"The attacker terminates TLS with a {cert} certificate of its own; its key matches no "
        "TLSA record.", ["T-06", "T-08"], attack=f"[{ATT % cert}]", tags=["intercept"])
for cert, what in (("expired", "expired"), ("wrong-name", "for another name"),
                   ("self-signed", "self-signed")):
    add(f"ee-receiver-{cert}", f"DANE-EE MX whose own certificate is {what}",
        f"The genuine receiver's certificate is {what}, and 3 1 1 names its key. DANE-EE checks "
        "neither names nor dates (RFC 7672 §3.1.1): the mail goes over TLS.", ["T-08", "T-12"],
        expect="delivered-tls", twin="delivered", attacked_set=f'set.receiver = {{cert = "{cert}"}}',
        tags=["receiver"])
# --- selectors and matching types (T-11)
for sel, mt, what in ((0, 0, "the full certificate"), (0, 1, "a SHA-256 of the certificate"),
                      (1, 2, "a SHA-512 of the key"), (1, 0, "the full public key")):
    tl = f'[{{usage = 3, selector = {sel}, mtype = {mt}, cert = "genuine"}}]'
    add(f"ee-{sel}{mt}-intercept", f"DANE-EE 3 {sel} {mt} ({what}), TLS intercepted",
        f"The TLSA record carries {what}. The attacker's self-signed certificate matches none.",
        ["T-08", "T-11"], tlsa=tl, attack=f"[{ATT % 'self-signed'}]", tags=["intercept"])
# --- DANE-TA(2): the chain must lead to the anchor, with names and dates checked
add("ta-strip", "DANE-TA MX (2 1 1 for the lab CA), STARTTLS stripped",
    "The domain names its CA as trust anchor. Stripped STARTTLS must not lead to plaintext.",
    ["T-06", "T-09"], tlsa=f"[{TA}]", attack='["strip-starttls"]', tags=["strip"])
add("ta-intercept-untrusted", "DANE-TA MX, TLS intercepted with another CA's certificate",
    "The attacker's certificate for the MX name comes from a CA the TLSA record does not name.",
    ["T-09"], tlsa=f"[{TA}]", attack=f"[{ATT % 'untrusted'}]", tags=["intercept"])
add("ta-intercept-self-signed", "DANE-TA MX (2 0 1), TLS intercepted, self-signed",
    "The anchor is named by a SHA-256 of the whole CA certificate; the attacker's self-signed "
    "certificate chains to nothing.", ["T-09", "T-11"],
    tlsa='[{usage = 2, selector = 0, mtype = 1, cert = "ca"}]',
    attack=f"[{ATT % 'self-signed'}]", tags=["intercept"])
add("ta-receiver-expired", "DANE-TA MX whose certificate is expired",
    "Under DANE-TA the server certificate must be in date (RFC 7672 §3.1.2): the genuine MX "
    "with an expired certificate gets no mail; the message waits.", ["T-09", "T-15"],
    tlsa=f"[{TA}]", attacked_set='set.receiver = {cert = "expired"}', tags=["receiver"])
add("ta-receiver-wrong-name", "DANE-TA MX whose certificate names another host",
    "Under DANE-TA the certificate must name the MX host or the recipient domain.",
    ["T-09"], tlsa=f"[{TA}]", attacked_set='set.receiver = {cert = "wrong-name"}',
    tags=["receiver"])
# --- unusable records: TLS stays mandatory (T-07)
for usage, name in ((1, "pkix-ee"), (0, "pkix-ta")):
    cert = "genuine" if usage == 1 else "ca"
    add(f"{name}-only-strip", f"Only a {name.upper()} ({usage}) TLSA record, STARTTLS stripped",
        "PKIX-TA and PKIX-EE are unusable for SMTP (RFC 7672 §3.1.3), but a secure TLSA RRset "
        "still makes TLS mandatory: no plaintext fallback.", ["T-07", "T-10"],
        tlsa=f'[{{usage = {usage}, selector = 1, mtype = 1, cert = "{cert}"}}]',
        attack='["strip-starttls"]', tags=["unusable"])
add("pkix-ee-intercept", "Only a PKIX-EE TLSA record, TLS intercepted",
    "With no usable record the sender needs TLS but cannot authenticate it: an intercepting "
    "attacker reads the mail, which RFC 7672 §2.2 allows.", ["T-07", "T-10"],
    tlsa='[{usage = 1, selector = 1, mtype = 1, cert = "genuine"}]',
    attack=f"[{ATT % 'self-signed'}]", expect="delivered", tags=["unusable"])
add("unknown-usage-strip", "A TLSA record of unknown usage 4, STARTTLS stripped",
    "An unknown usage is unusable, and TLS stays mandatory.", ["T-07", "T-11"],
    tlsa='[{usage = 4, selector = 1, mtype = 1, cert = "genuine"}]',
    attack='["strip-starttls"]', tags=["unusable"])
add("unknown-selector-strip", "A DANE-EE record with unknown selector 7, STARTTLS stripped",
    "An unknown selector makes the record unusable; TLS stays mandatory.",
    ["T-07", "T-11"], tlsa='[{usage = 3, selector = 7, mtype = 1, cert = "genuine"}]',
    attack='["strip-starttls"]', tags=["unusable"])
add("unknown-mtype-intercept", "DANE-EE record with matching type 9 beside a good one",
    "An unknown matching type is skipped, the usable 3 1 1 record still authenticates: the "
    "attacker's certificate is refused.", ["T-11", "T-06"],
    tlsa=f'[{{usage = 3, selector = 1, mtype = 9, cert = "genuine"}}, {EE}]',
    attack=f"[{ATT % 'self-signed'}]", tags=["intercept"])
# --- DNS attacks: the attacker cannot sign (T-14), a failed lookup is not "no TLSA" (T-04)
add("forge-tlsa", "Forged TLSA record for the attacker's key, TLS intercepted",
    "The attacker answers the TLSA query with 3 1 1 of its own certificate, signed with its "
    "own key, and intercepts TLS. The signature does not validate: the lookup is bogus.",
    ["T-04", "T-14"], attack=f'["forge-tlsa", {ATT % "self-signed"}]', tags=["dns"])
add("strip-rrsig-host", "RRSIGs stripped from the MX host's answers, STARTTLS stripped",
    "The attacker removes the signatures from the MX host's A and TLSA answers so they look "
    "unsigned. The zone has a DS: the answers are bogus, not insecure.", ["T-04", "T-14"],
    attack='[{kind = "strip-rrsig", hosts = ["mx1.example.test"]}, "strip-starttls"]',
    tags=["dns"])
add("strip-rrsig-zone", "Every RRSIG of the recipient zone stripped, STARTTLS stripped",
    "The MX answer itself loses its signature: the MX lookup is bogus and the message waits.",
    ["T-02", "T-14", "T-15"], attack='["strip-rrsig", "strip-starttls"]', tags=["dns"])
add("drop-tlsa", "TLSA answer emptied without a denial proof, STARTTLS stripped",
    "The attacker answers NOERROR with no TLSA and no NSEC: the denial is unproven, the lookup "
    "bogus, and the host unusable.", ["T-04", "T-14"],
    attack='["drop-tlsa", "strip-starttls"]', tags=["dns"])
add("expire-rrsig", "TLSA signature replayed after its expiry, TLS intercepted",
    "The attacker serves the TLSA record with a signature that expired a day ago.",
    ["T-04", "T-14"], attack=f'["expire-rrsig", {ATT % "self-signed"}]', tags=["dns"])
add("remove-ds", "DS removed at the parent, the zone made to look unsigned",
    "The attacker deletes the DS of example.test from test. and strips the zone's "
    "signatures: without a signed proof that no DS exists, the zone is bogus, not insecure.",
    ["T-02", "T-14"], attack='["remove-ds", "strip-starttls"]', tags=["dns"])
add("wrong-ds", "DS and keys replaced by the attacker's",
    "The attacker serves its own DS at the parent and re-signs the zone with its key; the "
    "parent's signature does not cover the forged DS.", ["T-02", "T-14"],
    attack='["wrong-ds", "strip-starttls"]', tags=["dns"])
# --- where DANE does not apply
add("ds-missing", "Signed zone with no DS at the parent (island of security)",
    "The recipient zone is signed but its parent has no DS, proven by a signed NSEC: the zone "
    "is insecure, its TLSA records ignored, STARTTLS stripping succeeds.", ["T-01"],
    dane_extra='ds = "missing"', attack='["strip-starttls"]', expect="delivered",
    tags=["insecure"])
add("no-tlsa", "Signed zone, no TLSA records (secure denial), STARTTLS stripped",
    "The NSEC chain proves there is no TLSA for the MX host: no DANE, opportunistic TLS, and the "
    "stripping attacker wins as against any opportunistic sender.", ["T-05"], tlsa="[]",
    attack='["strip-starttls"]', expect="delivered", tags=["insecure"])
add("host-zone-unsigned", "MX host in an unsigned zone, TLSA published there",
    "mx.other.test lives in an unsigned zone: its address is insecure, so no TLSA lookup "
    "(RFC 7672 §2.2.2).", ["T-03"], head='[dns]\nmx = ["mx.other.test"]',
    dane_extra='unsigned = ["other.test"]', attack='["strip-starttls"]', expect="delivered",
    tags=["insecure"])
add("insecure-mx-signed-host", "Unsigned recipient zone, MX host in a signed provider zone",
    "example.test is unsigned but its MX mx.provider.test is signed with TLSA records. RFC 7672 "
    "§2.2.1 lets a sender use them anyway; one that does refuses the stripped connection.",
    ["T-13"], head='[dns]\nmx = ["mx.provider.test"]', dane_extra='unsigned = ["example.test"]',
    attack='["strip-starttls"]', tolerate='["delivered-plaintext"]',
    because="T-13: DANE with an insecure MX RRset is a MAY", tags=["insecure"])
# --- several MX hosts (T-04, T-06)
TWO = '[dns]\nmx = ["mx1.example.test", "mx2.example.test"]'
add("next-mx-after-bogus-tlsa", "First MX's TLSA lookup bogus and intercepted, second MX fine",
    "mx1's TLSA answer is emptied without proof and its TLS intercepted; a DANE sender skips "
    "mx1 and delivers to mx2 over authenticated TLS.", ["T-04"], head=TWO,
    attack=('[{kind = "drop-tlsa", hosts = ["mx1.example.test"]}, {kind = "intercept-tls", '
            'cert = "self-signed", hosts = ["mx1.example.test"]}]'),
    expect="delivered-tls", tags=["mx"])
add("next-mx-after-strip", "First MX stripped, second MX fine",
    "STARTTLS is stripped at mx1 only: a DANE sender moves on to mx2.", ["T-06"], head=TWO,
    attack='[{kind = "strip-starttls", hosts = ["mx1.example.test"]}]', expect="delivered-tls",
    tags=["mx"])
add("all-mx-stripped", "Every MX stripped: the message waits",
    "Both MX hosts publish TLSA records and both lose STARTTLS: the message is deferred, "
    "never bounced.", ["T-06", "T-15"], head=TWO, attack='["strip-starttls"]', tags=["mx"])
# --- DANE and MTA-STS (RFC 8461 §2, X-01)
POLICY = '[policy]\nmode = "enforce"'
add("sts-valid-dane-fails", "MTA-STS would accept, DANE refuses: DANE wins",
    "The receiver's certificate is valid for MTA-STS, but the domain's TLSA record names "
    "another key. MTA-STS must not override the failing DANE validation.", ["X-01", "T-06"],
    head=POLICY, attacked_set='set.dane = {tlsa = [{usage = 3, selector = 1, mtype = 1, cert = "other"}]}',
    twin="delivered-tls", tags=["mta-sts"])
add("sts-testing-dane-strip", "MTA-STS testing, DANE-EE, STARTTLS stripped",
    "A testing policy would deliver anyway; DANE applies to the host and refuses.",
    ["X-01", "T-06"], head='[policy]\nmode = "testing"', attack='["strip-starttls"]',
    tags=["mta-sts"])
add("sts-enforce-dane-intercept", "MTA-STS enforce and DANE-EE, TLS intercepted",
    "Both defences refuse the attacker's certificate; with DNSSEC gone MTA-STS still does.",
    ["X-01", "T-06"], head=POLICY, attack=f"[{ATT % 'self-signed'}]",
    twin="not-delivered", tags=["mta-sts"])

# --- TLS reporting of DANE sessions (RFC 8460 §4.3.2.1, §4.4: policy type tlsa)
add("tlsrpt-strip", "DANE-EE MX stripped: the report says starttls-not-supported",
    "The refused delivery is reported under policy type tlsa, the TLSA records as the policy "
    "string.", ["T-06", "R-02", "R-04"], attack='["strip-starttls"]',
    report="starttls-not-supported", tags=["tlsrpt"])
add("tlsrpt-tlsa-invalid", "DANE-EE MX intercepted: the report says tlsa-invalid",
    "A certificate that matches no TLSA record is reported as tlsa-invalid.",
    ["T-06", "R-04"], attack=f"[{ATT % 'self-signed'}]", report="tlsa-invalid",
    tags=["tlsrpt"])
add("tlsrpt-dnssec-invalid", "TLSA lookup bogus: the report says dnssec-invalid",
    "A TLSA answer without a valid proof leaves the host unused and is reported as "
    "dnssec-invalid.", ["T-04", "R-04"], attack='["drop-tlsa", "strip-starttls"]',
    report="dnssec-invalid", tags=["tlsrpt"])


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for s in S:
        (OUT / f"{s['name']}.toml").write_text(render(s))
    print(f"wrote {len(S)} scenarios to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
