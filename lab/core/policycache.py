"""The MTA-STS cache and the policy decision (RFC 8461 §3.1, §3.3, §5.1), pure: the clock is a
`now: float` argument (seconds), so tests and the `clock` capability can move time at will.

One delivery goes: `discover(records)` -> `decide(txt, cached, now)` -> fetch if the decision
says so -> `after_fetch(decision, policy_or_error)`. `PolicyCache.decide` and `PolicyCache.settle`
do the same with the cache's own state, back-off (F-09) included."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Literal

from msgspec import Struct

from .policy import (
    MultipleRecords,
    NoRecord,
    Policy,
    PolicyError,
    RecordSyntax,
    TxtRecord,
    parse_txt_records,
)

FETCH_BACKOFF_S = 300.0  # RFC 8461 §3.3 (F-09): "five minutes or longer per version ID"


class TxtFailure(enum.Enum):
    """Every way the `_mta-sts.D` TXT lookup can fail to give one valid record."""

    NO_RECORD = "no-record"  # NXDOMAIN, NODATA, or no v=STSv1 record (D-01, D-03)
    MULTIPLE = "multiple-records"  # D-02
    SYNTAX = "record-syntax"  # D-04, D-05
    LOOKUP_FAILED = "lookup-failed"  # SERVFAIL, timeout (D-09)


def discover(records: Sequence[str] | None) -> TxtRecord | TxtFailure:
    """The TXT lookup's outcome from its joined records; None means the lookup itself failed."""
    if records is None:
        return TxtFailure.LOOKUP_FAILED
    try:
        return parse_txt_records(records)
    except NoRecord:
        return TxtFailure.NO_RECORD
    except MultipleRecords:
        return TxtFailure.MULTIPLE
    except RecordSyntax:
        return TxtFailure.SYNTAX


def _domain(name: str) -> str:
    # K-04: the key is the policy domain itself, normalised; never an MX host.
    return name.removesuffix(".").lower()


class CachedPolicy(Struct, frozen=True):
    """A policy as fetched for one TXT `id` at `fetched_at`."""

    id: str
    policy: Policy
    fetched_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age  # RFC 8461 §3.2 max_age (K-02)

    def live(self, now: float) -> bool:
        return now < self.expires_at


Action = Literal["use-cached", "fetch", "no-policy"]


class Decision(Struct, frozen=True):
    """What to do before delivery. `policy` is what applies now; for "fetch", what applies if
    the fetch fails or is not allowed (F-07, F-08). `why` names the CONFORMANCE ids."""

    action: Action
    policy: Policy | None
    fetch_id: str | None
    why: str


# The decision table: (TXT outcome, cache state) -> (action, why).
# Cache states: "none" (nothing cached, or expired: K-02), "same" (live, same id as the TXT
# record), "live" (live, another id or no id to compare).
# Invariants: a live cached policy is never dropped because DNS or HTTPS failed (D-09, F-08); an
# expired one is never used (K-02); a fetch happens only for a valid record whose id is not the
# live cached one (K-01), so never after D-02 or an invalid record.
# RFC 8461 §3.1: with several records or an invalid one, "assume the recipient domain does not
# have an available MTA-STS policy", but "the absence of a usable TXT record is not by itself
# sufficient to remove a sender's previously cached policy" (§5.1): so D-02 keeps a live cache.
_TABLE: dict[tuple[str, str], tuple[Action, str]] = {
    ("valid", "none"): ("fetch", "F-07"),
    ("valid", "same"): ("use-cached", "K-01"),
    ("valid", "live"): ("fetch", "K-01 F-08"),
    ("no-record", "none"): ("no-policy", "D-01"),
    ("no-record", "live"): ("use-cached", "D-09"),
    ("multiple-records", "none"): ("no-policy", "D-02"),
    ("multiple-records", "live"): ("use-cached", "D-02 D-09"),
    ("record-syntax", "none"): ("no-policy", "D-04"),
    ("record-syntax", "live"): ("use-cached", "D-09"),
    ("lookup-failed", "none"): ("no-policy", "D-09"),
    ("lookup-failed", "live"): ("use-cached", "D-09 F-08"),
}


def decide(txt: TxtRecord | TxtFailure, cached: CachedPolicy | None, now: float, *,
           fetch_allowed: bool = True) -> Decision:
    """Whether to use the cached policy, fetch, or go without a policy (RFC 8461 §3.3, §5.1).

    `fetch_allowed=False` (the F-09 back-off) turns a fetch into its fallback."""
    if cached is not None and not cached.live(now):
        cached = None  # RFC 8461 §3.2 (K-02): an expired policy is never applied
    if cached is None:
        state = "none"
    elif isinstance(txt, TxtRecord) and txt.id == cached.id:
        state = "same"
    else:
        state = "live"
    kind = "valid" if isinstance(txt, TxtRecord) else txt.value
    action, why = _TABLE[kind, state]
    fallback = cached.policy if cached is not None else None
    if action == "fetch" and not fetch_allowed:  # RFC 8461 §3.3 (F-09)
        action = "no-policy" if fallback is None else "use-cached"
        why += " F-09"
    if action == "fetch":
        assert isinstance(txt, TxtRecord)
        return Decision("fetch", fallback, txt.id, why)
    return Decision(action, fallback if action == "use-cached" else None, None, why)


def after_fetch(decision: Decision, fetched: Policy | PolicyError) -> Policy | None:
    """The policy that applies once the fetch a decision asked for is done (RFC 8461 §3.3):
    the new one, or on any failure (an invalid policy included, P-02) the decision's fallback:
    nothing (F-07) or the live cached policy (F-08)."""
    return fetched if isinstance(fetched, Policy) else decision.policy


class PolicyCache:
    """Policies by policy domain (K-04), with the fetch failures that start a back-off (F-09)."""

    def __init__(self) -> None:
        self._policies: dict[str, CachedPolicy] = {}
        self._failures: dict[tuple[str, str], float] = {}

    def lookup(self, domain: str, now: float) -> CachedPolicy | None:
        """The cached policy for `domain`, or None if there is none or it has expired (K-02)."""
        cached = self._policies.get(_domain(domain))
        return cached if cached is not None and cached.live(now) else None

    def store(self, domain: str, id: str, policy: Policy, now: float) -> CachedPolicy:
        """Cache a freshly fetched policy, replacing any older one (K-01)."""
        key = _domain(domain)
        cached = self._policies[key] = CachedPolicy(id=id, policy=policy, fetched_at=now)
        self._failures = {k: t for k, t in self._failures.items() if k[0] != key}
        return cached

    def record_fetch_failure(self, domain: str, id: str, now: float) -> None:
        self._failures[_domain(domain), id] = now

    def may_fetch(self, domain: str, id: str, now: float) -> bool:
        """False within FETCH_BACKOFF_S of a failed fetch of this `id` (RFC 8461 §3.3, F-09)."""
        failed_at = self._failures.get((_domain(domain), id))
        return failed_at is None or now - failed_at >= FETCH_BACKOFF_S

    def decide(self, domain: str, txt: TxtRecord | TxtFailure, now: float) -> Decision:
        """`decide` against this cache, the F-09 back-off included."""
        allowed = not isinstance(txt, TxtRecord) or self.may_fetch(domain, txt.id, now)
        return decide(txt, self.lookup(domain, now), now, fetch_allowed=allowed)

    def settle(self, domain: str, decision: Decision, fetched: Policy | PolicyError,
               now: float) -> Policy | None:
        """Record a fetch's result (store, or start the back-off) and return what applies."""
        if decision.fetch_id is None:
            raise ValueError(f"settle() after a {decision.action!r} decision: nothing was fetched")
        if isinstance(fetched, Policy):
            self.store(domain, decision.fetch_id, fetched, now)
        else:
            self.record_fetch_failure(domain, decision.fetch_id, now)
        return after_fetch(decision, fetched)
