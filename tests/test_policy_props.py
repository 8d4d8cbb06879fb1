"""Properties of downgrade_lab.core.policy: serialising round-trips, MX matching agrees with an independent
label-by-label model, and no input escapes the PolicyError hierarchy."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from downgrade_lab.core.policy import (
    MAX_AGE_LIMIT,
    MODES,
    Policy,
    PolicyError,
    TxtRecord,
    mx_matches,
    parse_policy,
    parse_txt_records,
    serialise_policy,
    validate_fetch,
)
from downgrade_lab.core.policycache import TxtFailure, discover

FEW = settings(max_examples=300, deadline=None)

# ---- valid policies ---------------------------------------------------------------------------
label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,8}[A-Za-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
pattern = st.tuples(st.booleans(), domain).map(lambda t: ("*." if t[0] else "") + t[1])
ext_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}", fullmatch=True).filter(
    lambda n: n not in ("version", "mode", "mx", "max_age"))
ext_char = st.characters(min_codepoint=0x20, exclude_categories=["Cs"],
                         exclude_characters="\x7f")
ext_value = st.text(ext_char, min_size=1, max_size=20).filter(lambda v: v == v.strip(" "))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    mode = draw(st.sampled_from(MODES))
    mx = draw(st.lists(pattern, min_size=0 if mode == "none" else 1, max_size=4))
    names = draw(st.lists(ext_name, max_size=3, unique=True))
    ext = tuple((n, draw(ext_value)) for n in names)
    age = draw(st.integers(0, MAX_AGE_LIMIT))
    return Policy(mode=mode, mx=tuple(mx), max_age=age, extensions=ext)


@FEW
@given(policies(), st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_serialise_then_parse_round_trips(policy: Policy, end: str, final: bool) -> None:
    text = serialise_policy(policy)
    assert parse_policy(text) == policy
    assert parse_policy(text.encode("utf-8")) == policy
    # P-01: LF or CRLF, final terminator optional
    other = text.replace("\r\n", end)
    assert parse_policy(other if final else other.removesuffix(end)) == policy


# ---- MX matching against a label-by-label model (M-01) ---------------------------------------
def _lower(s: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def model(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1 read literally: compare label lists; a first label "*" stands for exactly one
    non-empty label. A host with a "*" in it is no host name and matches nothing (RFC 6125
    §6.4.3: the wildcard is the presented identifier's, never the reference identifier's)."""
    if "*" in host:
        return False
    p = _lower(pattern[:-1] if pattern.endswith(".") else pattern).split(".")
    h = _lower(host[:-1] if host.endswith(".") else host).split(".")
    if len(p) >= 2 and p[0] == "*":
        return len(h) == len(p) and h[0] != "" and h[1:] == p[1:]
    return h == p


# A small alphabet of labels so that generated names and patterns collide often.
name_label = st.sampled_from(["mail", "MAIL", "mx1", "a", "b", "example", "Example", "test",
                              "evil", "*", "x*", "", "\u0130", "k", "\u212a"])
name = st.tuples(st.lists(name_label, min_size=1, max_size=4), st.booleans()).map(
    lambda t: ".".join(t[0]) + ("." if t[1] else ""))


@FEW
@given(name, name)
def test_mx_matches_agrees_with_label_model(pattern: str, host: str) -> None:
    assert mx_matches(pattern, host) == model(pattern, host)


@FEW
@given(domain, label, label)
def test_wildcard_matches_exactly_one_label(base: str, first: str, second: str) -> None:
    assert mx_matches(f"*.{base}", f"{first}.{base}")
    assert not mx_matches(f"*.{base}", base)
    assert not mx_matches(f"*.{base}", f"{first}.{second}.{base}")
    assert not mx_matches(base, f"{first}.{base}")


# ---- nothing escapes PolicyError -------------------------------------------------------------
sts_ish = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from("v=STSv1;id=ab \t-_.:"), max_size=40),
    st.text(max_size=40).map(lambda s: "v=STSv1;" + s),
)


@FEW
@given(st.lists(sts_ish, max_size=3))
def test_txt_records_raise_only_policy_errors(records: list[str]) -> None:
    try:
        parse_txt_records(records)
    except PolicyError:
        pass
    assert isinstance(discover(records), (TxtFailure, TxtRecord))


policy_ish = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    st.lists(st.sampled_from(["version: STSv1", "mode: enforce", "mode: none", "mx: a.test",
                              "max_age: 60", "max_age: 99999999999", "x: y", "", " ", "\r"]),
             max_size=8).map("\n".join),
)


@FEW
@given(policy_ish)
def test_parse_policy_raises_only_policy_errors(body: bytes | str) -> None:
    try:
        policy = parse_policy(body)
    except PolicyError:
        return
    assert parse_policy(serialise_policy(policy)) == policy


@FEW
@given(st.integers(0, 999), st.one_of(st.none(), st.text(max_size=30),
                                      st.sampled_from(["text/plain", "text/plain; charset=utf-8"])),
       st.one_of(st.binary(max_size=200), policies().map(lambda p: serialise_policy(p).encode())),
       st.booleans())
def test_validate_fetch_raises_only_policy_errors(status: int, content_type: str | None,
                                                  body: bytes, redirected: bool) -> None:
    try:
        validate_fetch(status, content_type, body, redirected)
    except PolicyError:
        pass
