"""The lab PKI (lab/harness/pki.py) made in this process and by its background certificate
maker (lab/harness/certs.py run as a process): the same certificates either way, checked by
real TLS handshakes; keys private and removed; the maker ended at close; its failures one
line each."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import stat
from pathlib import Path

import pytest

from downgrade_lab.core.scenario import load_scenario
from downgrade_lab.errors import LabError
from downgrade_lab.harness import pki as pki_module
from downgrade_lab.harness.pki import PKI, WRONG_NAME

HOST = "mx1.example.test"
MODES = [pytest.param(False, id="in-process"), pytest.param(True, id="background")]


async def _handshake(pki: PKI, host: str, variant: str, server_name: str) -> str | None:
    """A real TLS handshake on loopback against `host`'s certificate in `variant`, by a client
    that trusts the lab CA only and checks `server_name`: None if it verified, else why not."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0,
                                        ssl=pki.server_context(host, variant))
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(),
                                                  server_hostname=server_name)
        writer.close()
        return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message
    finally:
        server.close()
        await server.wait_closed()


# variant -> what a verifying client says (None: it verifies), a failure beside the success
VERDICTS = [
    ("valid", None),
    ("expired", "certificate has expired"),
    ("wrong-name", f"Hostname mismatch, certificate is not valid for '{HOST}'."),
    ("untrusted", "unable to get local issuer certificate"),
    ("self-signed", "self-signed certificate"),
]


@pytest.mark.parametrize("background", MODES)
@pytest.mark.parametrize(("variant", "why"), VERDICTS)
async def test_every_variant_fails_verification_as_it_should(background: bool, variant: str,
                                                            why: str | None) -> None:
    with PKI(background=background) as pki:
        assert (pki._maker is not None) is background
        assert await _handshake(pki, HOST, variant, HOST) == why


@pytest.mark.parametrize("background", MODES)
def test_the_chain_ends_with_the_lab_ca_and_names_the_host(background: bool) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    with PKI(background=background) as pki:
        chain = [x509.load_der_x509_certificate(d) for d in pki.chain_der(HOST)]
        assert len(chain) == 2 and chain[0].issuer == chain[1].subject
        assert chain[-1].public_bytes(Encoding.DER) == pki.ca_der()  # RFC 7672 §3.1.2
        assert pki.leaf_der(HOST) == pki.chain_der(HOST)[0]
        names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert names.value.get_values_for_type(x509.DNSName) == [HOST]
        wrong = x509.load_der_x509_certificate(pki.leaf_der(HOST, "wrong-name"))
        assert wrong.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [WRONG_NAME]


@pytest.mark.parametrize("background", MODES)
def test_keys_are_private_and_go_with_the_pki(background: bool) -> None:
    pki = PKI(background=background)
    pki.prepare([(HOST, "valid"), ("MTA-STS.example.test.", "expired")])
    cert, key = pki.cert_files("mta-sts.example.test", "expired")  # the same, once normalised
    assert stat.S_IMODE(os.stat(pki.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    maker = pki._maker
    pki.close()
    pki.close()  # idempotent
    assert not pki.dir.exists()
    if maker is not None:
        assert maker.returncode == 0  # it ended at the end of its input, not killed
    with pytest.raises(LabError, match="closed"):
        pki.cert_files(HOST)


@pytest.mark.parametrize("background", MODES)
@pytest.mark.parametrize(("host", "variant", "words"), [
    ("bad host", "valid", "host name"),
    ("a/b", "valid", "host name"),
    ("", "valid", "host name"),
    (HOST, "forged", "unknown certificate variant"),
])
def test_bad_requests_are_refused_before_anything_is_made(background: bool, host: str,
                                                          variant: str, words: str) -> None:
    with PKI(background=background) as pki:
        with pytest.raises(LabError, match=words):
            pki.cert_files(host, variant)
        with pytest.raises(LabError, match=words):
            pki.prepare([(host, variant)])
        assert pki.cert_files(HOST)[0].is_file()  # still serves after a refusal
        made = sorted(p.name for p in pki.dir.iterdir() if p.name != "maker.log")
        assert made == sorted(["lab-ca.pem", f"{HOST}.valid.crt", f"{HOST}.valid.key"])


def test_a_maker_that_dies_is_one_line_not_a_hang() -> None:
    with PKI(background=True) as pki:
        assert pki.ca_file.is_file()
        assert pki._maker is not None
        pki._maker.kill()
        pki._maker.wait()
        with pytest.raises(LabError, match="^the certificate maker stopped: "):
            pki.cert_files(HOST)


def test_the_maker_ignores_ctrl_c_and_ends_with_its_owner() -> None:
    with PKI(background=True) as pki:
        assert pki.ca_file.is_file()  # it is up: its handler is set
        assert pki._maker is not None
        pki._maker.send_signal(signal.SIGINT)  # a Ctrl-C reaches the whole process group
        assert pki.cert_files(HOST)[0].is_file()
        maker = pki._maker
    assert maker.returncode == 0


def test_without_its_script_the_pki_is_made_in_process(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setattr(pki_module, "MAKER", tmp_path / "absent.py")
    with PKI(background=True) as pki:
        assert pki._maker is None
        assert pki.cert_files(HOST)[0].is_file()


# A scenario -> the certificates its lab presents first (Scenario.certificates)
PLANS = [
    ('title = "t"\n[policy]\n[[step]]\nexpect = "delivered"\n',
     [("mx1.example.test", "valid"), ("mta-sts.example.test", "valid"),
      ("tlsrpt.example.test", "valid")]),
    ('title = "t"\n[[step]]\nexpect = "delivered"\n',  # no policy: no policy host
     [("mx1.example.test", "valid"), ("tlsrpt.example.test", "valid")]),
    ('title = "t"\n[dns]\nmx = ["MX1.example.test.", "mx2.example.test"]\n[receiver]\ncert = '
     '"expired"\n[policy]\ncert = "wrong-name"\n[[step]]\nexpect = "delivered"\n[[step]]\nexpect = "delivered"\n[step.set.receiver]\n'
     'cert = "valid"\n',
     [("mx1.example.test", "expired"), ("mx2.example.test", "expired"),
      ("mta-sts.example.test", "wrong-name"), ("tlsrpt.example.test", "valid"),
      ("mx1.example.test", "valid"), ("mx2.example.test", "valid")]),
]


@pytest.mark.parametrize(("text", "wanted"), PLANS)
def test_a_scenarios_certificates(tmp_path: Path, text: str, wanted: list[tuple[str, str]]) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    assert list(load_scenario(path).certificates()) == wanted


def test_every_catalogue_certificate_can_be_asked_for_ahead() -> None:
    from downgrade_lab.core.scenario import discover
    from downgrade_lab.core.scenariofiles import BUILTIN

    wanted = {c for s in discover([BUILTIN]) for c in s.certificates()}
    assert ("mx1.example.test", "expired") in wanted  # the plan reads the variants
    with PKI(background=True) as pki:
        pki.prepare(sorted(wanted))
        assert all(pki.cert_files(host, variant)[1].is_file() for host, variant in wanted)


def test_an_unused_pki_kills_its_maker_rather_than_wait_for_it() -> None:
    # a run that goes to workers drops the PKI the command started: no waiting on its start
    pki = PKI(background=True)
    maker = pki._maker
    assert maker is not None
    pki.close()
    assert maker.returncode == -signal.SIGKILL
    assert not pki.dir.exists()


def test_a_maker_that_fails_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    broken = tmp_path / "certs.py"
    broken.write_text("import sys\nsys.stderr.write('Traceback...\\nValueError: no CA today\\n')\n"
                      "sys.exit(3)\n")
    monkeypatch.setattr(pki_module, "MAKER", broken)
    with PKI(background=True) as pki, pytest.raises(LabError) as caught:
        pki.cert_files(HOST)
    assert str(caught.value) == "the certificate maker stopped: ValueError: no CA today"


def test_asking_ahead_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pki_module, "PREPARE_MAX", 3)
    with PKI(background=True) as pki:
        pki.prepare([(f"h{i}.example.test", "valid") for i in range(10)] * 2)
        assert len(pki._asked) == 3  # the CA's answer and two certificates, not ten
        assert pki.cert_files("h9.example.test")[0].is_file()  # the rest when asked for
