"""The TLS-RPT collector: mailed reports (RFC 8460 §5.3) and their DKIM signature, read one line
per case, then the HTTPS endpoint (§5.4) with real TLS on port 0, a client that trusts only the
lab CA, and the proof that a client that does not trust it fails."""

from __future__ import annotations

import gzip
import json
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from downgrade_lab.core import dkim
from downgrade_lab.core.tlsrpt import MEDIA_GZIP, MEDIA_JSON, Session, build_report
from downgrade_lab.core.tlsrptmail import compose_mail, looks_like_report, read_mail
from downgrade_lab.harness.pki import PKI
from downgrade_lab.services.receiver import StoredMessage
from downgrade_lab.services.tlsrpt import REPORT_PATH, TlsRptCollector, read_mailbox, status_for

HOST = "tlsrpt.example.test"
REPORT = build_report([Session("example.test", "sts", "starttls-not-supported", ("version: STSv1",),
                               ("mx1.example.test",), "127.0.0.1", "mx1.example.test")],
                      organization_name="Lab", contact_info="tlsrpt@sender.test", report_id="r1",
                      start=1_700_000_000, end=1_700_000_100)
GZ = gzip.compress(json.dumps(REPORT).encode())


OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # RFC 8301's minimum


@pytest.fixture(autouse=True)
def _published_key() -> None:
    """The submitter's key, as the reference sender publishes it (`s._domainkey.d` TXT)."""
    dkim.publish("sender.test", "tlsrpt", dkim.lab_public_key())


def mail(*swaps: tuple[str, bytes], gzipped: bool = True, sign: bool = True,
         selector: str = "tlsrpt", key: rsa.RSAPrivateKey | None = None) -> bytes:
    """The reference sender's report mail; each of `swaps` (old text, new bytes) replaces a
    piece of it first."""
    body = GZ if gzipped else json.dumps(REPORT).encode()
    data = compose_mail(body, policy_domain="example.test", submitter="sender.test",
                        mail_from="noreply@sender.test", rcpt_to="tlsrpt@example.test",
                        report_id="r1", filename="sender.test!example.test!1!2.json.gz",
                        gzipped=gzipped, now=1_700_000_100)
    for old, new in swaps:
        data = data.replace(old.encode(), new)
    return dkim.sign(data, domain="sender.test", selector=selector, key=key) if sign else data


# ---- reading a mailed report: RFC 8460 §5.3 (R-03, R-05) ---------------------------------------
def test_composed_mail_reads_back_clean() -> None:
    got = read_mail(mail())
    assert got.problems == ()
    assert got.report_domain == "example.test" and got.submitter == "sender.test"
    assert got.subject == "Report Domain: example.test Submitter: sender.test Report-ID: <r1>"
    assert got.attachment_type == MEDIA_GZIP and got.body == GZ
    assert got.dkim is not None and got.dkim.domain == "sender.test" and got.dkim.body_hash_ok
    assert got.dkim.verified and got.dkim.signed_headers == dkim.SIGNED_HEADERS


@pytest.mark.parametrize(("data", "problem"), [
    (mail(gzipped=False), None),
    (mail(("multipart/report", b"multipart/mixed")), "mail: Content-Type is "),
    (mail(('report-type="tlsrpt"', b'report-type="dmarc"')), "mail: Content-Type is "),
    (mail(("TLS-Report-Domain:", b"X-Report-Domain:")), "mail: no TLS-Report-Domain header field"),
    (mail(("TLS-Report-Submitter:", b"X-Submitter:")), "mail: no TLS-Report-Submitter header field"),
    (mail(("application/tlsrpt+gzip", b"application/gzip")), "mail: no application/tlsrpt+json or application/tlsrpt+gzip part"),
    (mail(sign=False), "mail: no DKIM-Signature"),
    (mail().replace(b"bh=", b"l=10; bh=", 1), "mail: DKIM-Signature: uses l="),
    (mail().replace(b"h=from : ", b"h=", 1), "mail: DKIM-Signature: From is not signed"),
    (mail().replace(b"This is an aggregate", b"This was an aggregate"), "mail: DKIM-Signature: body hash does not match"),
    (mail(key=OTHER_KEY), "mail: DKIM-Signature: signature does not verify"),
], ids=["json-attachment", "mixed", "dmarc", "no-domain", "no-submitter", "no-report-part", "unsigned",
        "l-tag", "from-unsigned", "body-changed", "wrong-key"])
def test_read_mail(data: bytes, problem: str | None) -> None:
    problems = read_mail(data).problems
    if problem is None:
        assert problems == ()
    else:
        assert any(p.startswith(problem) for p in problems), problems


# ---- the DKIM signature itself (RFC 6376, RFC 8460 §5.3): one success, then each way it breaks --
LAB_PUBLIC = dkim.lab_public_key()


@pytest.mark.parametrize(("data", "key", "problem"), [
    (mail(), None, None),
    (mail(), LAB_PUBLIC, None),
    (mail(key=OTHER_KEY), OTHER_KEY.public_key(), None),
    (mail().replace(b"This is an aggregate", b"This was an aggregate"), None, "body hash does not match"),
    (mail().replace(b"Submitter: sender.test", b"Submitter: evil.test", 1), None, "signature does not verify: b= does not match"),
    (mail().replace(b"bh=", b"l=10; bh=", 1), None, "uses l="),
    (mail().replace(b"h=from : ", b"h=", 1), None, "From is not signed"),
    (mail(key=OTHER_KEY), None, "signature does not verify: b= does not match"),
    (mail(), OTHER_KEY.public_key(), "signature does not verify: b= does not match"),
    (mail(selector="unpublished"), None, "signature does not verify: no key published at 'unpublished._domainkey.sender.test'"),
    (mail().replace(b"a=ed25519-sha256", b"a=rsa-md5", 1), None, "signature does not verify: unknown signature algorithm"),
], ids=["verifies", "verifies-given-key", "other-key-given", "body-changed", "header-changed", "l-tag",
        "from-unsigned", "wrong-key", "wrong-key-given", "unpublished", "bad-algorithm"])
def test_dkim_signature(data: bytes, key: dkim.PublicKey | None, problem: str | None) -> None:
    facts = dkim.inspect_signature(data, key)
    assert facts is not None and facts.domain == "sender.test" and facts.selector is not None
    if problem is None:
        assert facts.problems == () and facts.verified and facts.body_hash_ok
        assert dkim.verify(data, key)
    else:
        assert any(p.startswith(problem) for p in facts.problems), facts.problems
        assert not dkim.verify(data, key)


def test_unsigned_mail_has_no_signature_and_does_not_verify() -> None:
    assert dkim.inspect_signature(mail(sign=False)) is None
    assert not dkim.verify(mail(sign=False), LAB_PUBLIC)


def test_key_record_is_the_rfc_6376_txt_form() -> None:
    assert dkim.key_record(LAB_PUBLIC).startswith(b"v=DKIM1; k=ed25519; s=tlsrpt; p=")  # RFC 8463
    assert dkim.key_record(OTHER_KEY.public_key()).startswith(b"v=DKIM1; k=rsa; s=tlsrpt; p=MIG")


def stored(data: bytes, rcpt: str = "tlsrpt@example.test", tls: bool = False) -> StoredMessage:
    return StoredMessage(mx="mx1.example.test", mail_from="noreply@sender.test", rcpt_tos=(rcpt,),
                         data=data, tls=tls, tls_version=None, cipher=None, sni=None,
                         peer="127.0.0.1:1", time=1.0)


def test_mailbox_picks_reports_and_mail_to_the_rua() -> None:
    probe = b"Subject: probe\r\n\r\nhello\r\n"
    messages = [stored(mail()), stored(probe, rcpt="bob@example.test"),
                stored(probe, rcpt="TLSRPT@example.test"),
                stored(mail(("TLS-Report-Domain:", b"X-Report-Domain:")), rcpt="other@example.test")]
    got = read_mailbox(messages, {"tlsrpt@example.test"})
    assert [r.valid for r in got] == [True, False, False]
    assert got[0].report == REPORT and got[0].mail["tls"] is False
    assert got[0].mail["dkim"]["body_hash_ok"] is True and got[0].mail["dkim"]["verified"] is True
    assert "mail: no DKIM-Signature" not in " ".join(got[0].problems)
    assert looks_like_report(mail()) and not looks_like_report(probe)


# ---- the HTTPS endpoint: RFC 8460 §5.4 ---------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "ctype", "error", "status"), [
    ("POST", REPORT_PATH, MEDIA_GZIP, None, 200),
    ("POST", REPORT_PATH + "?x=1", MEDIA_JSON, None, 200),
    ("POST", REPORT_PATH, MEDIA_JSON, "not JSON", 400),
    ("POST", REPORT_PATH, "application/json", "media type", 415),
    ("GET", REPORT_PATH, MEDIA_JSON, None, 405),
    ("POST", "/", MEDIA_JSON, None, 404),
])
def test_status_for(method: str, path: str, ctype: str, error: str | None, status: int) -> None:
    assert status_for(method, path, ctype, error) == status


@pytest.fixture
async def collector() -> AsyncIterator[TlsRptCollector]:
    with PKI() as pki:
        async with TlsRptCollector(pki, "example.test") as service:
            yield service


async def post(service: TlsRptCollector, body: bytes, ctype: str, *, path: str = REPORT_PATH,
               trusted: bool = True, method: str = "POST") -> int:
    ctx = ssl.create_default_context(cafile=str(service.pki.ca_file)) if trusted \
        else ssl.create_default_context()
    async with aiohttp.ClientSession() as session, session.request(
            method, f"https://127.0.0.1:{service.port}{path}", data=body, ssl=ctx,
            server_hostname=HOST, headers={"Content-Type": ctype}) as resp:
        return resp.status


async def test_gzip_post_is_kept_with_sni_and_size(collector: TlsRptCollector) -> None:
    assert await post(collector, GZ, MEDIA_GZIP) == 200
    (got,) = collector.take_reports()
    assert got.valid and got.report == REPORT and got.channel == "https"
    assert got.sni == HOST and got.size == len(GZ) and got.media_type == MEDIA_GZIP
    assert got.to_json()["valid"] is True and collector.take_reports() == []
    collector.check()


async def test_broken_posts_are_kept_too(collector: TlsRptCollector) -> None:
    bad = dict(REPORT, policies=[])
    assert await post(collector, json.dumps(bad).encode(), MEDIA_JSON) == 200
    assert await post(collector, GZ, "application/json") == 415
    assert await post(collector, b"\x1f\x8b broken", MEDIA_GZIP) == 400
    assert await post(collector, GZ, MEDIA_GZIP, path="/") == 404
    assert await post(collector, b"", MEDIA_JSON, method="GET") == 405
    got = collector.take_reports()
    assert [r.status for r in got] == [200, 415, 400, 404]  # a GET submits nothing
    assert not any(r.valid for r in got)
    assert got[0].problems == ("policies: is empty (a report covers at least one policy)",)
    assert got[1].error is not None and "media type 'application/json'" in got[1].error
    assert got[3].problems[0] == "posted to '/', not the rua path '/report'"
    collector.check()


async def test_a_client_without_the_lab_ca_fails(collector: TlsRptCollector) -> None:
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await post(collector, GZ, MEDIA_GZIP, trusted=False)
    assert collector.take_reports() == []
