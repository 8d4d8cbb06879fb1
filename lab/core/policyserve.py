"""What the lab's policy host does (DESIGN §2), pure: lab/services/policyhost.py moves the bytes.

- `fetch_mode()`: how a step's policy-layer attacks treat every connection (serve it, or
  `block-policy-fetch` refusing, resetting or swallowing it);
- `certificate()`: which certificate answers a TLS ClientHello (its name and variant);
- `route()`: what an HTTP request is answered with;
- `trickle_interval()`: how slowly the policy body goes out (F-06).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from msgspec import Struct

from ..errors import LabError
from .model import BLOCK_HOWS, Attack, PolicySpec
from .names import name_key

WELL_KNOWN = "/.well-known/mta-sts.txt"  # RFC 8461 §3.2 (F-01)
SERVE = "serve"
# Every mode a policy host can be in: SERVE, or one way of blocking the fetch.
MODES = (SERVE, *BLOCK_HOWS)
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def fetch_mode(attacks: Sequence[Attack]) -> str:
    """`serve`, or how `block-policy-fetch` takes every connection: refused | reset | timeout.
    The last block attack of the step wins; one without `how` refuses."""
    mode = SERVE
    for attack in attacks:
        if attack.kind == "block-policy-fetch":
            mode = attack.how or "refused"
            if mode not in BLOCK_HOWS:  # `serve` is no way of blocking
                allowed = ", ".join(BLOCK_HOWS)
                raise LabError(f"block-policy-fetch how must be one of {allowed}, got {mode!r}")
    return mode


def certificate(server_name: str | None, policy: PolicySpec | None,
                default_identity: str) -> tuple[str, str]:
    """(identity, variant) of the certificate that answers a ClientHello asking for
    `server_name`: the name asked for, or `default_identity` (`mta-sts.D`, RFC 8461 §3.3, F-02)
    when none or a non-host name was sent; in the variant the policy configures (F-10)."""
    asked = name_key(server_name or "")
    identity = asked if _HOSTNAME.fullmatch(asked) else default_identity
    return identity, policy.cert if policy is not None else "valid"


def trickle_interval(policy: PolicySpec | None) -> float:
    """Seconds between two bytes of the body, so it takes the policy's `trickle_s` in all
    (RFC 8461 §3.3, F-06); 0: the body goes out at once."""
    if policy is None or not policy.trickle_s:
        return 0.0
    return policy.trickle_s / max(1, len(policy.body()))


class Reply(Struct, frozen=True):
    """What to answer: status, headers in order, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _text(status: int, message: str) -> Reply:
    return Reply(status, (("Content-Type", "text/plain"),), message.encode() + b"\n")


def route(policy: PolicySpec | None, method: str, path: str) -> Reply:
    """The answer to `method path` while `policy` is configured (None: the domain has none)."""
    if policy is None:
        return _text(404, "no MTA-STS policy here")
    if method not in ("GET", "HEAD"):
        return Reply(405, (("Allow", "GET, HEAD"), ("Content-Type", "text/plain")), b"")
    if policy.redirect is not None and path == WELL_KNOWN:
        # RFC 8461 §3.3 (F-03): a conformant sender stops here; one that follows the
        # redirect finds the policy below and gives itself away.
        return Reply(301, (("Location", policy.redirect), ("Content-Type", "text/plain")), b"")
    if path == (policy.redirect or WELL_KNOWN):
        # Exactly the configured Content-Type: F-05 cases need `text/html` or a bare type
        # without the charset aiohttp would otherwise add.
        return Reply(policy.status, (("Content-Type", policy.content_type),), policy.body())
    return _text(404, "not found")


def trickles(interval: float, reply: Reply, method: str) -> bool:
    """Whether `reply` goes out one byte at a time: only a GET's non-empty body, and only when
    the step trickles (`interval` from `trickle_interval()`)."""
    return interval > 0 and bool(reply.body) and method == "GET"
