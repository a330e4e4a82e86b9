"""An HTTP uplink's shared core: one session, and a cached token fetched single-flight."""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import aiohttp

from agent.dispatch.uplink import Uplink
from agent.errors import AgentError
from agent.uplinks.http_session import client_session


class TokenError(AgentError):
    """The platform's token endpoint did not give us a token."""


class TokenSessionUplink(Uplink):
    """Opens one TLS-verifying session; `_ensure_token` caches what `_fetch_token` returns."""

    def __init__(
        self,
        name: str,
        *,
        verify_tls: bool,
        ca_file: Path | None,
        timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name)
        self._session_settings = (verify_tls, ca_file, timeout)
        self._monotonic = monotonic  # token expiry
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    @abstractmethod
    async def _fetch_token(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        """A new token and for how many seconds to use it (raise TokenError if refused)."""

    async def open(self) -> None:
        """Create the HTTP session (no connection is made yet)."""
        verify_tls, ca_file, timeout = self._session_settings
        self._session = client_session(verify_tls=verify_tls, ca_file=ca_file, timeout=timeout)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authenticate(self) -> None:
        """Fetch a new token now, whatever the cached one's expiry."""
        self._token = None
        await self._ensure_token()

    async def healthcheck(self) -> bool:
        """Whether a token can be had (a request that sends no record)."""
        try:
            await self._ensure_token()
        except (TokenError, TimeoutError, aiohttp.ClientError, OSError):
            return False
        return True

    async def _ensure_token(self) -> str:
        """The cached token, or a new one; concurrent callers share one fetch."""
        async with self._token_lock:
            if self._token is not None and self._monotonic() < self._token_expires:
                return self._token
            assert self._session is not None, "open() first"
            token, usable_for = await self._fetch_token(self._session)
            self._token = token
            self._token_expires = self._monotonic() + usable_for
            return token


def usable_for(lifetime: float, margin: float) -> float:
    """Seconds to use a token that lives `lifetime`: renewed `margin` early, at most half-way."""
    return lifetime - min(margin, lifetime / 2)
