"""The typed run record (lab/core/record.py): its JSON, reading it back, its version and its
schema. Pure: no sockets (the whole catalogue is validated in tests/test_e2e.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest

from downgrade_lab import __version__
from downgrade_lab.core.record import (
    SCHEMA_VERSION,
    AttackEntry,
    PairRecord,
    ReportCheck,
    RunRecord,
    SenderReport,
    StepRecord,
    dumps_record,
)
from downgrade_lab.core.recordparts import (
    Connection,
    DnsQuery,
    PolicyFetch,
    Received,
    TlsReport,
    TranscriptEntry,
    WireChunk,
)
from downgrade_lab.errors import LabError
from downgrade_lab.frontends.cli import ExitStatus
from downgrade_lab.frontends.console import ExitStatus as ConsoleExitStatus
from tests.recordschema import schema_errors

TOKEN = "DGLTOKEN" + "0" * 32


def _step(**changes: Any) -> StepRecord:
    step = StepRecord(
        attack=(AttackEntry("strip-starttls"),
                AttackEntry("intercept-tls", hosts=("mx1.example.test",), cert="expired",
                            table=True)),
        expect="not-delivered", outcome="delivered-plaintext", verdict="FAIL", reason="leaked",
        attacker_saw_mail_from=True, attacker_saw_body=True, token=TOKEN,
        sender_report=SenderReport("delivered", "250 OK", {
            "policy": {"mode": None}, "attempts": [{"mx": "mx1.example.test",
                                                    "result": "delivered", "tls": False}]}),
        received=(Received("mx1.example.test", "a@s.test", ("b@example.test",), "body", 4, False,
                           None, None, None, "127.0.0.1:1", 1.5, "Q1"),),
        dns_queries=(DnsQuery(1.0, "udp", "example.test.", "MX", "NOERROR",
                              ("example.test. 0 IN MX 10 mx1.example.test.",), "", "127.0.0.1:2"),),
        policy_fetches=(PolicyFetch(1.1, None, "", "", 0, None, None, "reset"),),
        connections=(Connection("mx1.example.test", 1.2, ("strip-starttls",), True, 0, 0, None,
                                False, False, "EHLO x\r\n", 8,
                                wire=(WireChunk(1.2, "sender->attacker", "RUhMTw=="),),
                                wire_truncated=False),),
        transcript=(TranscriptEntry("reply", "receiver->sender", "250-x\n250 STARTTLS", "250 x",
                                    True, "receiver", "strip-starttls", False,
                                    "mx1.example.test", 0),),
        report_flush=[{"rua": "mailto:r@example.test", "sent": True}],
        report_check=ReportCheck("PASS", ""),
        tlsrpt_reports=(TlsReport("https", True, 2.0, 10, "application/tlsrpt+json",
                                  {"sni": "tlsrpt.example.test", "path": "/", "status": 200},
                                  {"policies": []}, None, ()),),
        report_connections=(), report_transcript=(), report_dns_queries=(),
        tolerate=("delivered-plaintext",), because="A-07")
    return msgspec.structs.replace(step, **changes)


def _record(*steps: StepRecord, verdict: str = "FAIL") -> RunRecord:
    pair = PairRecord("strip/x", "opportunistic", verdict, "step 1: leaked", "t", ("A-01",),
                      ("strip",), "scenarios/strip/x.toml", 0.5, steps or (_step(),))
    return RunRecord((pair,), 0.6, lab_version=__version__)


def test_the_json_round_trips_exactly() -> None:
    data = _record().to_json()
    text = json.dumps(data)
    assert json.dumps(RunRecord.from_json(json.loads(text)).to_json()) == text
    assert RunRecord.from_json(data) == _record()


def test_the_two_version_keys_lead_the_record() -> None:
    data = _record().to_json()
    assert list(data) == ["schema_version", "lab_version", "results", "summary", "duration_s"]
    assert data["schema_version"] == SCHEMA_VERSION and data["lab_version"] == __version__


@pytest.mark.parametrize(("absent", "keys"), [
    ("optional keys", {"report_flush", "report_check", "tolerate", "because"}),
    ("reports not collected", {"tlsrpt_reports", "report_connections", "report_transcript",
                               "report_dns_queries"}),
], ids=["optional", "reports"])
def test_absent_keys_stay_absent(absent: str, keys: set[str]) -> None:
    bare = StepRecord(attack=(), expect="delivered", outcome="not-delivered", verdict="FAIL",
                      reason="", attacker_saw_mail_from=False, attacker_saw_body=False,
                      token=TOKEN, sender_report=SenderReport("unknown"))
    data = bare.to_json()
    assert not keys & set(data), absent
    assert StepRecord.from_json(data) == bare
    assert set(_step().to_json()) >= keys  # the full step has them all


def test_attack_keeps_its_spelling() -> None:
    entries = [AttackEntry.from_json(a) for a in ("strip-starttls", {"kind": "spoof-mx"},
                                                  {"kind": "block-policy-fetch", "how": "reset"})]
    assert [e.to_json() for e in entries] == [
        "strip-starttls", {"kind": "spoof-mx"}, {"kind": "block-policy-fetch", "how": "reset"}]


def test_sender_report_keeps_the_adapters_extras_and_types_attempts() -> None:
    report = SenderReport.from_json({"state": "deferred", "detail": "d", "queue_id": "Q",
                                     "attempts": [{"mx": "m", "result": "temp-fail", "code": 451}]})
    assert report.to_json() == {"state": "deferred", "detail": "d", "queue_id": "Q",
                                "attempts": [{"mx": "m", "result": "temp-fail", "code": 451}]}
    (attempt,) = report.attempts
    assert (attempt.mx, attempt.result, attempt.code, attempt.verified) == ("m", "temp-fail", 451,
                                                                            False)
    assert SenderReport.from_json({"state": "unknown", "attempts": "garbage"}).attempts == ()


@pytest.mark.parametrize(("version", "ok"), [
    ("1.0", True), ("1.9", True), (None, True),  # None: written before the key existed
    ("2.0", False), ("0.9", False), ("x", False),
])
def test_from_json_reads_its_major_version_only(version: str | None, ok: bool) -> None:
    data = _record().to_json()
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    if ok:
        assert RunRecord.from_json(data).results == _record().results
    else:
        with pytest.raises(LabError, match=r"schema_version .* reads 1\.x only") as err:
            RunRecord.from_json(data)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("data", [[], {"results": {}}, {"summary": {}}, "x"],
                         ids=["list", "results-object", "no-results", "string"])
def test_from_json_refuses_what_is_no_record(data: Any) -> None:
    with pytest.raises(LabError, match="not a run record"):
        RunRecord.from_json(data)


@pytest.mark.parametrize(("verdicts", "status"), [
    (("PASS", "WEAK", "SKIP"), ExitStatus.OK),
    (("PASS", "FAIL"), ExitStatus.FAILED),
    (("PASS", "ERROR"), ExitStatus.FAILED),
    ((), ExitStatus.OK),
], ids=["pass-weak-skip", "fail", "error", "empty"])
def test_exit_code_follows_the_verdicts(verdicts: tuple[str, ...], status: ExitStatus) -> None:
    record = RunRecord(tuple(PairRecord(f"s{i}", "x", v, "") for i, v in enumerate(verdicts)))
    assert ExitStatus(record.exit_code()) is status


def test_the_cli_and_the_console_share_one_exit_status() -> None:
    assert ExitStatus is ConsoleExitStatus


# -- the JSON Schema: the hand-made record is valid, and each break of it is caught ------------

def test_a_full_record_is_valid() -> None:
    assert schema_errors(_record().to_json()) == []


def _set(path: tuple[Any, ...], value: Any) -> Any:
    data = _record().to_json()
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()
STEP = ("results", 0, "steps", 0)


@pytest.mark.parametrize(("path", "value"), [
    (("schema_version",), _DELETE),
    (("schema_version",), "2.0"),
    (("lab_version",), 1),
    (("surprise",), True),  # an undocumented key needs the schema (and the doc) to move
    (("results", 0, "verdict"), "MAYBE"),
    (("summary", "PASS"), -1),
    ((*STEP, "outcome"), "delivered"),  # an expectation, not an outcome
    ((*STEP, "token"), "DGLTOKENxyz"),
    ((*STEP, "attack", 0), {"hosts": ["mx1.example.test"]}),  # a table needs its kind
    ((*STEP, "sender_report", "state"), "queued"),
    ((*STEP, "received", 0, "size"), "4"),
    ((*STEP, "connections", 0, "wire", 0, "direction"), "sideways"),
    ((*STEP, "transcript", 0, "kind"), "line"),
    ((*STEP, "dns_queries", 0, "transport"), "quic"),
    ((*STEP, "policy_fetches", 0, "status"), None),
    ((*STEP, "tlsrpt_reports", 0, "channel"), "fax"),
    ((*STEP, "report_check"), {"verdict": "PASS"}),
], ids=lambda v: "/".join(map(str, v)) if isinstance(v, tuple) else None)
def test_each_break_of_the_schema_is_caught(path: tuple[Any, ...], value: Any) -> None:
    assert schema_errors(_set(path, copy.deepcopy(value)))


@pytest.mark.parametrize("data", [
    {"schema_version": "1.1", "results": [], "summary": {}, "duration_s": 0.0},
    {"schema_version": "1.1", "results": [{"scenario": "a/b", "steps": [{"x": [1, 2]}]}],
     "duration_s": 1.5},
    {"results": [{"scenario": "a"}, {"scenario": "b\nc", "why": "caf\u00e9 \u2603"}], "n": None},
])
def test_the_record_file_is_json_one_line_per_result(data: dict[str, Any]) -> None:
    text = dumps_record(data)
    assert json.loads(text) == data and text.endswith("}\n")
    lines = text.splitlines()
    n = len(data["results"])  # braces, a line per field, per result, and the list's end
    assert len(lines) == 2 + len(data) + n + (1 if n else 0)
    rows = [json.loads(line.strip().rstrip(",")) for line in lines if line.startswith("  {")]
    assert rows == data["results"]  # a pair is one line: grep finds it whole
    assert text.isascii()  # written as before, non-ASCII escaped


def test_a_run_records_text_reads_back_as_the_record() -> None:
    record = RunRecord((), 0.25, __version__)
    assert RunRecord.from_json(json.loads(record.to_text())) == record


def _without_wire(pair: PairRecord) -> dict[str, Any]:
    data = pair.to_json()
    for step in data["steps"]:
        for c in step["connections"]:
            c.pop("wire", None)
    return data


_NO_WIRE = msgspec.structs.replace(_step(), connections=(
    msgspec.structs.replace(_step().connections[0], wire=None, wire_truncated=None),))


@pytest.mark.parametrize("record", [
    RunRecord((), 0.25, __version__),
    _record(),  # a connection with pcap wire bytes
    _record(_NO_WIRE, _NO_WIRE, verdict="PASS"),
    RunRecord((PairRecord("a/b", "ref", "SKIP", "caf\u00e9 \u2603 \"q\"\n"),), 0.0),  # no steps
    RunRecord(_record().results * 3, 2.5, __version__),
], ids=["empty", "wire", "no-wire", "no-steps", "three-pairs"])
def test_the_texts_laid_out_from_one_encoding_are_the_encoders(record: RunRecord) -> None:
    assert record.to_text() == dumps_record(record.to_json())
    for pair in record.results:
        assert pair.row() == json.dumps(pair.to_json())
        assert pair.attachment() == dumps_record(_without_wire(pair), rows="steps")
        assert '"wire"' not in pair.attachment()
    assert ('"wire"' in record.to_text()) == any(
        c.wire is not None for p in record.results for s in p.steps for c in s.connections)


def test_a_pair_record_as_text_has_a_line_per_step() -> None:
    pair = {"scenario": "a/b", "steps": [{"outcome": "delivered-tls"}, {"outcome": "x"}], "n": 2}
    text = dumps_record(pair, rows="steps")
    assert json.loads(text) == pair
    assert text.splitlines()[3:6] == ['  {"outcome": "delivered-tls"},', '  {"outcome": "x"}', " ],"]
    assert dumps_record(pair).count("\n") == 5  # no `results`: a line per field only
