"""The shipped JSON Schema of the run record (lab/core/run-record.schema.json), for the tests
that validate records against it."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator

from downgrade_lab.core.record import SCHEMA_FILE


@cache
def validator() -> Draft202012Validator:
    schema = json.loads((files("downgrade_lab.core") / SCHEMA_FILE).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(record: Any) -> list[str]:
    """Every place `record` breaks the schema, as `path: message` (empty: valid)."""
    return [f"{e.json_path}: {e.message}" for e in validator().iter_errors(record)]
