"""The RFC 3986 `URI` rule (§3, Appendix A) as an exact check, for TLS-RPT's `tlsrpt-uri`.

Pure: no I/O. Written from the ABNF rather than taken from a library: `rfc3986` (PyPI) accepts
`https://bad/%` and spaces in a path, so it does not fit; `rfc3986-validator` is the same ABNF as
a regex but unmaintained since 2019. Only syntax is checked: a URI may be well formed and still
name nothing (`https://`, an empty authority, is a URI).
"""

from __future__ import annotations

import ipaddress
import re

# RFC 3986 §2.1-§2.3 and Appendix A. Character classes are ASCII only: a URI is US-ASCII, so
# a U-label or any other non-ASCII character fails (it must be percent-encoded first).
_PCT = r"%[0-9A-Fa-f]{2}"  # pct-encoded = "%" HEXDIG HEXDIG
_UNRESERVED = r"A-Za-z0-9\-._~"  # unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_SUB_DELIMS = r"!$&'()*+,;="  # sub-delims
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"  # pchar
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"  # scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_REG_NAME = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"  # also covers every IPv4address
_IP_LITERAL = r"\[(?P<ip>[^\]/?#@\[]*)\]"  # IP-literal; its content is checked below
_AUTHORITY = rf"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]*)?"
_SEGMENT = rf"{_PCHAR}*"
_PATH_ABEMPTY = rf"(?:/{_SEGMENT})*"
_PATH_ABSOLUTE = rf"/(?:{_PCHAR}+(?:/{_SEGMENT})*)?"
_PATH_ROOTLESS = rf"{_PCHAR}+(?:/{_SEGMENT})*"
_QUERY = rf"(?:{_PCHAR}|[/?])*"  # query and fragment share the rule
_HIER_PART = rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_ROOTLESS}|)"
_URI = re.compile(rf"{_SCHEME}:{_HIER_PART}(?:\?{_QUERY})?(?:#{_QUERY})?")
# IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
_IPV_FUTURE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+")


def is_uri(text: str) -> bool:
    """Whether `text` matches RFC 3986's `URI` rule exactly (scheme, hier-part, query, fragment)."""
    match = _URI.fullmatch(text)
    if match is None:
        return False
    ip = match.group("ip")
    if ip is None:
        return True
    if _IPV_FUTURE.fullmatch(ip):
        return True
    if "%" in ip:  # RFC 3986's IPv6address has no zone id (ipaddress would accept "%eth0")
        return False
    try:
        ipaddress.IPv6Address(ip)
    except ValueError:
        return False
    return True
