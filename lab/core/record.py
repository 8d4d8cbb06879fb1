"""The run record, typed (DESIGN §6, docs/run-record.md): a run, its (scenario, sender) pairs,
their steps and what the sender said of each. The services' records are in `recordparts`.

`to_json()` gives the record's JSON (the keys docs/run-record.md lists, in its order);
`RunRecord.from_json()` reads one back, tolerantly (missing keys take their defaults) but
refusing a record of another major `schema_version`. Pure: no I/O.

Versioning (docs/run-record.md): adding a key moves the minor version, changing or removing
one the major. A reader of major M reads every M.x record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, NamedTuple, Self

from msgspec import Struct, field

from ..errors import LabError
from .recordparts import (
    JSON,
    Connection,
    DaneEvidence,
    DnsQuery,
    JSONObject,
    PolicyFetch,
    Received,
    TlsReport,
    TranscriptEntry,
    flag,
    maybe_count,
    maybe_text,
    number,
    objects,
    text,
    texts,
)
from .verdict import exit_code, summary

SCHEMA_VERSION = "1.1"  # 1.1: the optional `dane` of a step, `authority` of a DNS query
# The JSON Schema (draft 2020-12) of this version, shipped beside this module.
SCHEMA_FILE = "run-record.schema.json"


class AttackEntry(Struct, frozen=True):
    """One of a step's attacks as the record shows it: a bare name (`table` false) for an
    attack with no parameters, else a table with those of hosts, cert and how that are set."""

    kind: str
    hosts: tuple[str, ...] | None = None
    cert: str | None = None
    how: str | None = None
    table: bool = False

    def to_json(self) -> JSON:
        if not self.table:
            return self.kind
        pairs = (("kind", self.kind), ("hosts", None if self.hosts is None else list(self.hosts)),
                 ("cert", self.cert), ("how", self.how))
        return {k: v for k, v in pairs if v is not None}

    @classmethod
    def from_json(cls, value: JSON) -> Self:
        if not isinstance(value, Mapping):
            return cls(str(value))
        hosts = value.get("hosts")
        return cls(text(value, "kind"), texts(value, "hosts") if hosts is not None else None,
                   maybe_text(value, "cert"), maybe_text(value, "how"), table=True)


class Attempt(Struct, frozen=True):
    """One MX host a built-in sender tried (`sender_report.attempts[k]`)."""

    mx: str
    result: str  # delivered | temp-fail | perm-fail | tls-failed | connect-failed
    ip: str | None = None
    connected: bool = False
    starttls_offered: bool = False
    tls: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool = False
    code: int | None = None
    text: str = ""
    detail: str = ""
    failure: str | None = None  # RFC 8460 result type of a TLS failure

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "mx"), text(d, "result"), maybe_text(d, "ip"), flag(d, "connected"),
                   flag(d, "starttls_offered"), flag(d, "tls"), maybe_text(d, "tls_version"),
                   maybe_text(d, "cipher"), flag(d, "verified"), maybe_count(d, "code"),
                   text(d, "text"), text(d, "detail"), maybe_text(d, "failure"))


class SenderReport(Struct, frozen=True):
    """The sender's own account of a step (`sender_report`). `extra` is what the adapter adds,
    in its order, exactly as it said it (open by design); `attempts` reads the built-in
    senders' `attempts` out of it."""

    state: str  # delivered | deferred | bounced | unknown
    detail: str = ""
    extra: Mapping[str, JSON] = field(default_factory=dict)

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return tuple(Attempt.from_json(a) for a in objects(self.extra, "attempts"))

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, **self.extra}

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        extra = {k: v for k, v in d.items() if k not in ("state", "detail")}
        return cls(text(d, "state", "unknown"), text(d, "detail"), extra)


class ReportCheck(Struct, frozen=True):
    """The judgement of a step's TLS-RPT expectation (`report_check`)."""

    verdict: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason}


class _Absent:
    """The one value of `_ABSENT`, also after a pickle round trip (worker records)."""

    def __reduce__(self) -> str:
        return "_ABSENT"  # pickled as a reference to the module's own


_ABSENT: Any = _Absent()  # report_flush not given (a sender without flush_reports())


class StepRecord(Struct, frozen=True):
    """One step: the verdict and the evidence it was judged on (`results[i].steps[j]`).
    The `tlsrpt_reports` and `report_*` parts are None (absent) when collecting the reports
    failed (the step is then an ERROR)."""

    attack: tuple[AttackEntry, ...]
    expect: str
    outcome: str
    verdict: str
    reason: str
    attacker_saw_mail_from: bool
    attacker_saw_body: bool
    token: str
    sender_report: SenderReport
    received: tuple[Received, ...] = ()
    other_mail: tuple[Received, ...] = ()
    dns_queries: tuple[DnsQuery, ...] = ()
    policy_fetches: tuple[PolicyFetch, ...] = ()
    connections: tuple[Connection, ...] = ()
    transcript: tuple[TranscriptEntry, ...] = ()
    report_flush: JSON = _ABSENT
    report_check: ReportCheck | None = None
    tlsrpt_reports: tuple[TlsReport, ...] | None = None
    report_connections: tuple[Connection, ...] | None = None
    report_transcript: tuple[TranscriptEntry, ...] | None = None
    report_dns_queries: tuple[DnsQuery, ...] | None = None
    tolerate: tuple[str, ...] = ()
    because: str = ""
    dane: DaneEvidence | None = None  # the DNSSEC evidence, steps with a [dane] table only

    @property
    def has_report_flush(self) -> bool:
        return self.report_flush is not _ABSENT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attack": [a.to_json() for a in self.attack], "expect": self.expect,
            "outcome": self.outcome, "verdict": self.verdict, "reason": self.reason,
            "attacker_saw_mail_from": self.attacker_saw_mail_from,
            "attacker_saw_body": self.attacker_saw_body, "token": self.token,
            "sender_report": self.sender_report.to_json(),
            "received": [m.to_json() for m in self.received],
            "other_mail": [m.to_json() for m in self.other_mail],
            "dns_queries": [q.to_json() for q in self.dns_queries],
            "policy_fetches": [f.to_json() for f in self.policy_fetches],
            "connections": [c.to_json() for c in self.connections],
            "transcript": [e.to_json() for e in self.transcript]}
        if self.has_report_flush:
            out["report_flush"] = self.report_flush
        if self.report_check is not None:
            out["report_check"] = self.report_check.to_json()
        for key, items in (("tlsrpt_reports", self.tlsrpt_reports),
                           ("report_connections", self.report_connections),
                           ("report_transcript", self.report_transcript),
                           ("report_dns_queries", self.report_dns_queries)):
            if items is not None:
                out[key] = [x.to_json() for x in items]
        if self.dane is not None:
            out["dane"] = self.dane.to_json()
        if self.tolerate:
            out["tolerate"] = list(self.tolerate)
        if self.because:
            out["because"] = self.because
        return out

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        check = d.get("report_check")
        sender = d.get("sender_report")
        dane = d.get("dane")
        reports = d.get("tlsrpt_reports")

        def present(key: str) -> bool:
            return isinstance(d.get(key), list | tuple)

        return cls(
            attack=tuple(AttackEntry.from_json(a) for a in d.get("attack") or ()),
            expect=text(d, "expect"), outcome=text(d, "outcome"), verdict=text(d, "verdict"),
            reason=text(d, "reason"), attacker_saw_mail_from=flag(d, "attacker_saw_mail_from"),
            attacker_saw_body=flag(d, "attacker_saw_body"), token=text(d, "token"),
            sender_report=SenderReport.from_json(sender if isinstance(sender, Mapping) else {}),
            received=tuple(Received.from_json(x) for x in objects(d, "received")),
            other_mail=tuple(Received.from_json(x) for x in objects(d, "other_mail")),
            dns_queries=tuple(DnsQuery.from_json(x) for x in objects(d, "dns_queries")),
            policy_fetches=tuple(PolicyFetch.from_json(x) for x in objects(d, "policy_fetches")),
            connections=tuple(Connection.from_json(x) for x in objects(d, "connections")),
            transcript=tuple(TranscriptEntry.from_json(x) for x in objects(d, "transcript")),
            report_flush=d["report_flush"] if "report_flush" in d else _ABSENT,
            report_check=ReportCheck(text(check, "verdict"), text(check, "reason"))
            if isinstance(check, Mapping) else None,
            # a report that is not an object (a hand-made record) is kept as its `report`
            tlsrpt_reports=tuple(TlsReport.from_json(r if isinstance(r, Mapping) else {"report": r})
                                 for r in reports) if isinstance(reports, list | tuple) else None,
            report_connections=tuple(Connection.from_json(x) for x in
                                     objects(d, "report_connections"))
            if present("report_connections") else None,
            report_transcript=tuple(TranscriptEntry.from_json(x) for x in
                                    objects(d, "report_transcript"))
            if present("report_transcript") else None,
            report_dns_queries=tuple(DnsQuery.from_json(x) for x in
                                     objects(d, "report_dns_queries"))
            if present("report_dns_queries") else None,
            tolerate=texts(d, "tolerate"), because=text(d, "because"),
            dane=DaneEvidence.from_json(dane) if isinstance(dane, Mapping) else None)


class PairRecord(Struct, frozen=True, dict=True):
    """One scenario against one sender (`results[i]`)."""

    scenario: str  # the scenario id
    sender: str
    verdict: str
    reason: str
    title: str = ""
    rfc: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    file: str = ""
    duration_s: float = 0.0  # rounded to 3 decimals
    steps: tuple[StepRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "sender": self.sender, "verdict": self.verdict,
                "reason": self.reason, "title": self.title, "rfc": list(self.rfc),
                "tags": list(self.tags), "file": self.file, "duration_s": self.duration_s,
                "steps": [s.to_json() for s in self.steps]}

    @cached_property
    def encoded(self) -> Encoded:
        """The JSON text of each field and each step, made once for the run record's row
        (`row()`) and the JUnit attachment (`attachment()`): both are these pieces laid out."""
        data = self.to_json()
        steps = data.pop("steps")
        fields = tuple((json.dumps(k), json.dumps(v)) for k, v in data.items())
        encoded = tuple(json.dumps(s) for s in steps)
        if any("wire" in c for s in steps for c in s["connections"]):
            for s in steps:
                for c in s["connections"]:
                    c.pop("wire", None)
            return Encoded(fields, encoded, tuple(json.dumps(s) for s in steps))
        return Encoded(fields, encoded, encoded)

    def row(self) -> str:
        """`json.dumps(self.to_json())`: the pair's line of the run record."""
        fields, steps, _ = self.encoded
        return "{" + "".join(f"{k}: {v}, " for k, v in fields) + f'"steps": [{", ".join(steps)}]}}'

    def attachment(self) -> str:
        """`dumps_record` of the pair without the pcap wire bytes (they have their own file),
        one line per field and per step: the JUnit test case's system-out."""
        fields, _, steps = self.encoded
        return _layout([*fields, ('"steps"', None)], steps)

    def keep_encoded(self, texts: Encoded) -> None:
        """Take `texts` as `encoded`: a worker made them from this very record and sent them
        with it (`harness.workers.read_share`)."""
        self.__dict__["encoded"] = texts

    @classmethod
    def from_json(cls, d: JSONObject) -> Self:
        return cls(text(d, "scenario"), text(d, "sender"), text(d, "verdict"),
                   text(d, "reason"), text(d, "title"), texts(d, "rfc"), texts(d, "tags"),
                   text(d, "file"), number(d, "duration_s"),
                   tuple(StepRecord.from_json(s) for s in objects(d, "steps")))


class RunRecord(Struct, frozen=True):
    """A whole run: every pair in order, the counts per verdict, the run's duration."""

    results: tuple[PairRecord, ...]
    duration_s: float = 0.0  # rounded to 3 decimals
    lab_version: str = ""  # the version of the lab that made the record
    schema_version: str = SCHEMA_VERSION

    def __repr__(self) -> str:
        # Not msgspec's: asyncio.run() formats its main task's result when it exits
        # (signal.getsignal on the partial that holds the task), and the catalogue's whole
        # record as text took a third of a second at the end of every run.
        return (f"RunRecord({len(self.results)} results, {self.counts()}, "
                f"duration_s={self.duration_s}, lab_version={self.lab_version!r}, "
                f"schema_version={self.schema_version!r})")

    def counts(self) -> dict[str, int]:
        return summary(r.verdict for r in self.results)

    def exit_code(self) -> int:
        """0 when no pair is FAIL or ERROR, else 1 (DESIGN §6)."""
        return exit_code(self.counts())

    def to_json(self) -> dict[str, Any]:
        return self._json([r.to_json() for r in self.results])

    def _json(self, results: object) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "lab_version": self.lab_version,
                "results": results, "summary": self.counts(), "duration_s": self.duration_s}

    def as_json(self) -> dict[str, Any]:
        """`to_json()` under the name the untyped record had (callers of `run_all`)."""
        return self.to_json()

    def to_text(self) -> str:
        """The record file's text (`--json`): `dumps_record` of `to_json()`, each pair's row
        as `PairRecord.row()` lays it out from the pieces it also gives JUnit."""
        return dumps_record(self._json(None), rows_text=[r.row() for r in self.results])

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        """A record read back from its JSON. A record without `schema_version` predates the
        versioning and has the 1.0 shape. LabError (one line) for another major version or
        for what is not a run record at all."""
        if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
            raise LabError("not a run record: no list of results")
        version = text(data, "schema_version", SCHEMA_VERSION)
        if major(version) != major(SCHEMA_VERSION):
            raise LabError(f"run record schema_version {version!r}: this lab reads "
                           f"{major(SCHEMA_VERSION)}.x only")
        return cls(tuple(PairRecord.from_json(r) for r in objects(data, "results")),
                   number(data, "duration_s"), text(data, "lab_version"), version)


class Encoded(NamedTuple):
    """A pair's JSON pieces (`PairRecord.encoded`): (key, value) texts of its fields but
    `steps`, its steps' texts, and the same without pcap wire bytes."""

    fields: tuple[tuple[str, str], ...]
    steps: tuple[str, ...]
    bare_steps: tuple[str, ...]


def dumps_record(data: Mapping[str, Any], rows: str = "results",
                 rows_text: Sequence[str] | None = None) -> str:
    """A record's JSON text, one line per top-level field and per item of the list `rows` (a
    run record's pair results, a pair record's steps), ending in a newline: `grep` and `diff`
    find a pair, and it is written by the C encoder (an indented `json.dumps` of the
    catalogue's 10 MB record takes five times as long). `rows_text`: the items' JSON texts,
    made already (`data[rows]` then only holds their place)."""
    items = data.get(rows)
    if rows_text is None and isinstance(items, list):
        rows_text = [json.dumps(r) for r in items]
    return _layout([(json.dumps(k), None if k == rows and rows_text is not None else
                     json.dumps(v)) for k, v in data.items()], rows_text or [])


def _layout(fields: Sequence[tuple[str, str | None]], rows: Sequence[str]) -> str:
    """`dumps_record`'s lines: each (key, value) text on its own line, and `rows` one a line
    under the key whose value is None."""
    lines = []
    for key, value in fields:
        if value is None:
            value = ("[\n  " + ",\n  ".join(rows) + "\n ]") if rows else "[]"
        lines.append(f" {key}: {value}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def major(version: str) -> str:
    """`1` of `1.4`."""
    return version.split(".", 1)[0]



# Views accept a typed record or its JSON (a record file, a hand-made test record).

def as_run(record: RunRecord | JSONObject) -> RunRecord:
    return record if isinstance(record, RunRecord) else RunRecord.from_json(record)


def as_pair(result: PairRecord | JSONObject) -> PairRecord:
    return result if isinstance(result, PairRecord) else PairRecord.from_json(result)


def as_step(step: StepRecord | JSONObject) -> StepRecord:
    return step if isinstance(step, StepRecord) else StepRecord.from_json(step)
