"""What the services recorded -> the evidence a step is judged on (DESIGN §4 "Outcomes").

One rule for `run`, `up` and `demo` (which shows run records): the outcome is read from the
genuine receiver's store and from what crossed the attacker, never from the sender's word.
Pure: the services' records are read through the protocols below (the receiver's
`StoredMessage`, the proxy's `ConnectionRecord` and its transcript `Entry` fit them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from .verdict import Evidence, Stored


class StoredCopy(Protocol):
    """A message the genuine receiver stored."""

    @property
    def data(self) -> bytes: ...

    @property
    def tls(self) -> bool: ...  # inside a TLS session the genuine receiver terminated itself


class Line(Protocol):
    """One transcript entry of a connection through the attacker."""

    @property
    def kind(self) -> str: ...  # command | reply | data | event


class Crossing(Protocol):
    """One connection through the attacker's proxy, as it recorded it."""

    @property
    def saw_mail_from(self) -> bool: ...  # a MAIL FROM crossed readably

    @property
    def client_plaintext(self) -> bytes: ...  # what the sender said that the attacker read

    @property
    def transcript(self) -> Sequence[Line]: ...


C = TypeVar("C", bound=StoredCopy)


def split(stored: Sequence[C], token: str | None) -> tuple[list[C], list[C]]:
    """(the copies of the probe message, everything else): a copy carries `token`. With no
    token (`up`: whatever the command sends is the probe), every message is a copy."""
    if token is None:
        return list(stored), []
    needle = token.encode()
    return [m for m in stored if needle in m.data], [m for m in stored if needle not in m.data]


def read_body(connection: Crossing, token: str | None) -> bool:
    """The attacker read a message body on `connection`: the proxy parsed a DATA payload it
    could read (a `data` line is logged only in the clear or inside TLS the attacker
    terminated) and, when the probe's token is known, what the sender said readably carries
    it (the token is only in the headers and body, never in the envelope)."""
    if not any(line.kind == "data" for line in connection.transcript):
        return False
    return token is None or token.encode() in connection.client_plaintext


def gather(stored: Sequence[StoredCopy], connections: Sequence[Crossing], *,
           token: str | None = None, sender_state: str | None = None, sender_detail: str = "",
           lab_error: str | None = None) -> Evidence:
    """The evidence of one step (or of an `up` session when `token` is None): which copies of
    the probe the genuine receiver stored and over what, whether the attacker read its body
    and whether it read a MAIL FROM (RFC 8461 §4.2 / A-01: neither may reach a host that
    failed validation)."""
    mine, _ = split(stored, token)
    return Evidence(
        stored=tuple(Stored(tls=m.tls) for m in mine),
        attacker_saw_body=any(read_body(c, token) for c in connections),
        attacker_saw_mail_from=any(c.saw_mail_from for c in connections),
        sender_state=sender_state,
        sender_detail=sender_detail,
        lab_error=lab_error,
    )
