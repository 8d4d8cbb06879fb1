"""JUnit XML: one test case per scenario x sender, the one-line reason as failure text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ...core.record import RunRecord, as_run
from ...core.recordparts import JSONObject

# Characters XML 1.0 cannot carry at all (§2.2); a reason may quote an SMTP line an attacker
# wrote, and one ESC byte would make the whole file unparseable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def to_junit(record: RunRecord | JSONObject) -> bytes:
    record = as_run(record)
    counts = record.counts()
    suite = ET.Element("testsuite", {
        "name": "downgrade-lab",
        "tests": str(len(record.results)),
        "failures": str(counts["FAIL"]),
        "errors": str(counts["ERROR"]),
        "skipped": str(counts["SKIP"]),
        "time": f"{record.duration_s:.3f}",
    })
    for r in record.results:
        case = ET.SubElement(suite, "testcase", {
            "classname": _xml_safe(f"downgrade-lab.{r.sender}"),
            "name": _xml_safe(r.scenario),
            "time": f"{r.duration_s:.3f}",
        })
        verdict, reason = r.verdict, _xml_safe(r.reason)
        if verdict == "FAIL":
            ET.SubElement(case, "failure", {"message": reason, "type": "FAIL"}).text = reason
        elif verdict == "ERROR":
            ET.SubElement(case, "error", {"message": reason, "type": "ERROR"}).text = reason
        elif verdict == "SKIP":
            ET.SubElement(case, "skipped", {"message": reason})
        elif verdict == "WEAK":
            ET.SubElement(case, "properties").append(
                ET.Element("property", {"name": "verdict", "value": f"WEAK: {reason}"}))
        ET.SubElement(case, "system-out").text = r.attachment()
    data: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data
