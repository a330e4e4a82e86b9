"""What every HTTP uplink shares: a TLS-verifying session and reading Retry-After."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp


def client_session(
    *, verify_tls: bool, ca_file: Path | None, timeout: float
) -> aiohttp.ClientSession:
    """A session that verifies TLS (with an extra CA bundle if given) unless told not to."""
    context: ssl.SSLContext | bool = verify_tls
    if verify_tls and ca_file:
        context = ssl.create_default_context(cafile=str(ca_file))
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        connector=aiohttp.TCPConnector(ssl=context),
    )


def retry_after_seconds(resp: aiohttp.ClientResponse) -> float | None:
    """The answer's Retry-After in seconds, if it gives one as a number."""
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
