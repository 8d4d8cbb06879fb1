"""DNS names as the lab compares and keys them."""

from __future__ import annotations


def name_key(name: str) -> str:
    """`name` as the lab compares it: lower case (RFC 4343: DNS names are compared without
    regard to ASCII case) and without the trailing dot of a fully qualified name, so
    `MX1.Example.TEST.` and `mx1.example.test` are one host."""
    return name.lower().rstrip(".")
