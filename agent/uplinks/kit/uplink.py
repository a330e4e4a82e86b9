"""An HTTP uplink's shared core: one session, an optional token cache, the request ladder."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from agent.dispatch.outcomes import Retry
from agent.dispatch.uplink import Uplink
from agent.uplinks.kit.config import HttpConnectionSection
from agent.uplinks.kit.request import TRANSPORT_ERRORS, Answer, Request, client_session, exchange
from agent.uplinks.kit.tokens import Token, TokenCache


class HttpPlatformUplink(Uplink):
    """Opens one TLS-verifying session; `tokens` caches what `_fetch_token` returns."""

    def __init__(
        self,
        name: str,
        config: HttpConnectionSection,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        hide: Sequence[str] = (),
    ) -> None:
        super().__init__(name)
        self._connection = config.connection()
        self._hide = tuple(hide)  # secrets no reason may quote
        self._session: aiohttp.ClientSession | None = None
        lifetime, margin = config.token_timing()
        self.tokens = TokenCache(self._acquire, lifetime=lifetime, margin=margin, clock=monotonic)

    async def _fetch_token(self, session: aiohttp.ClientSession) -> Token:
        """A new token (raise TokenError if refused); platforms with tokens override this."""
        raise NotImplementedError

    async def open(self) -> None:
        """Create the HTTP session (no connection is made yet)."""
        self._session = client_session(self._connection)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authenticate(self) -> None:
        """Fetch a new token now, whatever the cached one's expiry."""
        await self.tokens.renew()

    async def healthcheck(self) -> bool:
        """Whether a token can be had (a request that sends no record)."""
        try:
            await self.tokens.get()
        except TRANSPORT_ERRORS:
            return False
        return True

    async def _exchange(self, prepare: Callable[[], Awaitable[Request]]) -> Answer | Retry:
        """The answer to the request `prepare` makes, or a Retry saying why there is none."""
        assert self._session is not None, "open() first"
        return await exchange(self._session, prepare, self._connection, self._hide)

    async def _acquire(self) -> Token:
        assert self._session is not None, "open() first"
        return await self._fetch_token(self._session)
