"""JUnit XML: one test case per scenario x sender, the one-line reason as failure text."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any


def to_junit(record: dict[str, Any]) -> bytes:
    counts = record["summary"]
    suite = ET.Element("testsuite", {
        "name": "downgrade-lab",
        "tests": str(len(record["results"])),
        "failures": str(counts["FAIL"]),
        "errors": str(counts["ERROR"]),
        "skipped": str(counts["SKIP"]),
        "time": f"{record.get('duration_s', 0):.3f}",
    })
    for r in record["results"]:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"downgrade-lab.{r['sender']}",
            "name": r["scenario"],
            "time": f"{r.get('duration_s', 0):.3f}",
        })
        verdict, reason = r["verdict"], r["reason"]
        if verdict == "FAIL":
            ET.SubElement(case, "failure", {"message": reason, "type": "FAIL"}).text = reason
        elif verdict == "ERROR":
            ET.SubElement(case, "error", {"message": reason, "type": "ERROR"}).text = reason
        elif verdict == "SKIP":
            ET.SubElement(case, "skipped", {"message": reason})
        elif verdict == "WEAK":
            ET.SubElement(case, "properties").append(
                ET.Element("property", {"name": "verdict", "value": f"WEAK: {reason}"}))
        ET.SubElement(case, "system-out").text = json.dumps(r, indent=1)
    data: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data
