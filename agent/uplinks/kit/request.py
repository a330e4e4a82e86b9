"""One HTTP exchange with a platform, every transport failure mapped to a typed Retry."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from agent.dispatch.outcomes import Retry
from agent.uplinks.kit.config import Connection
from agent.uplinks.kit.tokens import TokenError

# What a request may raise when the platform or the network fails (never a bug of ours).
TRANSPORT_ERRORS = (TokenError, TimeoutError, aiohttp.ClientError, OSError)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request; `data` is a body (bytes) or a form (mapping)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    data: bytes | Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The platform's answer: status, body text (capped) and Retry-After in seconds."""

    status: int
    text: str
    retry_after: float | None = None


def client_session(connection: Connection) -> aiohttp.ClientSession:
    """A session that verifies TLS (with an extra CA bundle if given) unless told not to."""
    context: ssl.SSLContext | bool = connection.verify_tls
    if connection.verify_tls and connection.ca_file:
        context = ssl.create_default_context(cafile=str(connection.ca_file))
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=connection.timeout),
        connector=aiohttp.TCPConnector(ssl=context),
    )


def retry_after_seconds(resp: aiohttp.ClientResponse) -> float | None:
    """The answer's Retry-After in seconds, if it gives one as a number."""
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


async def fetch(
    session: aiohttp.ClientSession, request: Request, max_body: int | None = None
) -> Answer:
    """Send `request` and read its answer (transport failures raise)."""
    async with session.request(
        request.method,
        request.url,
        headers=dict(request.headers),
        data=request.data if isinstance(request.data, bytes | None) else dict(request.data),
        params=request.params,
    ) as resp:
        text = await resp.text(errors="replace")
        return Answer(resp.status, text[:max_body], retry_after_seconds(resp))


async def exchange(
    session: aiohttp.ClientSession,
    prepare: Callable[[], Awaitable[Request]],
    connection: Connection,
    hide: Sequence[str] = (),
) -> Answer | Retry:
    """The answer to the request `prepare` makes (it may fetch a token), or why to retry.

    Reasons never quote the strings in `hide` (e.g. a secret a token URL carries)."""
    try:
        return await fetch(session, await prepare(), connection.max_body)
    except TokenError as err:
        return Retry(_scrub(str(err), hide), unreadable=err.unreadable)
    except TimeoutError:
        return Retry(f"no answer within request_timeout {connection.timeout:g} s")
    except (aiohttp.ClientError, OSError) as err:
        return Retry(_scrub(f"{type(err).__name__}: {err}".rstrip(": "), hide))


def _scrub(text: str, hide: Sequence[str]) -> str:
    for secret in hide:
        if secret:
            text = text.replace(secret, "***")
    return text
