"""The HTTPS policy fetch of the reference sender (RFC 8461 §3.3): a thin aiohttp shell.

It resolves `mta-sts.D` through the lab DNS, connects where the lab says that host listens,
verifies the certificate against the lab CA for `mta-sts.D` (SNI included, F-02, F-10), never
follows redirects (F-03), never caches (F-04), stops reading past the size cap (F-06) and gives
up after a timeout (F-06: one for the answer, one for the body). Judging what came back is
`lab.policy.validate_fetch`'s job.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from msgspec import Struct

from ...core.policy import MAX_POLICY_BYTES, FetchError
from ..env import LabEnv
from .dnsclient import DnsClient, DnsError
from .smtpclient import client_context

HTTPS_PORT = 443
USER_AGENT = "downgrade-lab-reference/0.1"
BODY_TIMEOUT_S = 3.0  # F-06: once the headers are in, the whole body (at most 64 KiB)


class LabResolver(AbstractResolver):
    """aiohttp resolver: names through the lab DNS, ports from the lab's port map."""

    def __init__(self, env: LabEnv, dns: DnsClient) -> None:
        self._env = env
        self._dns = dns

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await self._dns.resolve_a(host)
        except DnsError as exc:
            raise OSError(f"cannot resolve {host}: {exc.reason}") from None
        port = self._env.port_for_ip(host, addresses[0], port or HTTPS_PORT)
        return [ResolveResult(hostname=host, host=ip, port=port, family=socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST) for ip in addresses]

    async def close(self) -> None:
        return None


class Fetched(Struct, frozen=True):
    status: int
    content_type: str | None
    body: bytes

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "content_type": self.content_type, "size": len(self.body)}


class PolicyFetcher:
    """One aiohttp session per sender; a new connection for every fetch.

    Two clocks (F-06): the answer's headers must come within the caller's `timeout_s` (a slow
    but honest host gets its chance), then the whole body within BODY_TIMEOUT_S, since a
    policy is at most 64 KiB: a body that trickles in is a failed fetch, not a long wait."""

    def __init__(self, env: LabEnv, dns: DnsClient) -> None:
        ctx = client_context(env, verify=True)  # the lab CA and nothing else, TLS 1.2+
        connector = aiohttp.TCPConnector(resolver=LabResolver(env, dns), ssl=ctx,
                                         force_close=True, use_dns_cache=False)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                              timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        await self._session.close()

    async def fetch(self, domain: str, timeout_s: float) -> Fetched:
        """GET https://mta-sts.D/.well-known/mta-sts.txt (F-01). Raises FetchError."""
        url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
        phase = f"no answer within {timeout_s:.3g} s"
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._session.get(url, allow_redirects=False,
                                               headers={"User-Agent": USER_AGENT})
            try:
                phase = f"the body did not arrive within {BODY_TIMEOUT_S:g} s"
                body = bytearray()
                async with asyncio.timeout(BODY_TIMEOUT_S):
                    async for chunk in resp.content.iter_chunked(16384):
                        body += chunk
                        if len(body) > MAX_POLICY_BYTES:
                            # RFC 8461 §3.3 (F-06): too big is a failed fetch, never a truncated
                            # policy.
                            raise FetchError(f"policy larger than {MAX_POLICY_BYTES} bytes")
                return Fetched(resp.status, resp.headers.get("Content-Type"), bytes(body))
            finally:
                resp.release()
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError(f"certificate of mta-sts.{domain}: {exc.certificate_error}",
                             webpki=True) from None
        except aiohttp.ClientSSLError as exc:
            raise FetchError(f"TLS with mta-sts.{domain} failed: {exc}", webpki=True) from None
        except TimeoutError:
            raise FetchError(phase) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(f"fetch failed: {exc!r}") from None
