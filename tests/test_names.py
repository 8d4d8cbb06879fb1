"""The one form the lab compares and keys DNS names in (lab/core/names.py)."""

from __future__ import annotations

import pytest

from downgrade_lab.core.names import name_key


@pytest.mark.parametrize(("a", "b", "same"), [
    ("mx1.example.test", "mx1.example.test", True),
    ("MX1.Example.TEST", "mx1.example.test", True),  # RFC 4343: ASCII case does not matter
    ("mx1.example.test.", "mx1.example.test", True),  # a fully qualified name's dot neither
    ("Mta-Sts.Example.Test.", "mta-sts.example.test", True),
    (".", "", True),  # the root (a null MX's exchange)
    ("mx1.example.test", "mx1.example.test.evil", False),  # a suffix is another name
    ("mx1.example.test", "mx2.example.test", False),
    ("evil-mx1.example.test", "mx1.example.test", False),  # and so is a prefix
    ("mx1.example.test", "mx1.exampletest", False),  # the dots inside a name stay
], ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_names_that_dns_takes_for_one_have_one_key(a: str, b: str, same: bool) -> None:
    assert (name_key(a) == name_key(b)) is same
    assert name_key(name_key(a)) == name_key(a)  # a key is its own key
    assert not name_key(a).endswith(".") and name_key(a) == name_key(a).lower()
