"""A token cache: acquired by any number of steps, renewed early, one fetch for many callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.errors import AgentError


class TokenError(AgentError):
    """The platform's token endpoint did not give us a token; `unreadable` when it answered
    something we cannot read a token from (an HTML page with 200, JSON cut short or without the
    token): retried, then a dead letter with an alert like any unreadable answer."""

    def __init__(self, reason: str, *, unreadable: bool = False) -> None:
        super().__init__(reason)
        self.unreadable = unreadable


@dataclass(frozen=True, slots=True)
class Token:
    """A token and the lifetime (s) the platform stated, if it stated one."""

    value: str
    lifetime: float | None = None


def usable_for(lifetime: float, margin: float) -> float:
    """Seconds to use a token that lives `lifetime`: renewed `margin` early, at most half-way."""
    return lifetime - min(margin, lifetime / 2)


class TokenCache:
    """Holds one token from `acquire` until `margin` before it expires, or until invalidated.

    `acquire` is any coroutine: one request, or several chained (e.g. a client token, then a
    public key from a second TokenCache, then a password grant). Knows no uplink or dispatcher.
    """

    def __init__(
        self,
        acquire: Callable[[], Awaitable[Token]],
        *,
        lifetime: float,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._acquire = acquire
        self._lifetime = lifetime  # when the platform states none
        self._margin = margin
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._generation = 0  # counts acquisitions: who waited on one need not start another

    async def get(self) -> str:
        """The cached token, or a new one; concurrent callers share one acquisition."""
        async with self._lock:
            if self._token is not None and self._clock() < self._expires:
                return self._token
            return await self._renew_locked()

    async def renew(self) -> str:
        """A new token, unless one was acquired while this call waited for another's."""
        seen = self._generation
        async with self._lock:
            if self._generation != seen and self._token is not None:
                return self._token
            return await self._renew_locked()

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token (only if it is still `token`, when given): the platform refused it."""
        if token is None or token == self._token:
            self._token = None

    async def _renew_locked(self) -> str:
        self._token = None
        token = await self._acquire()
        lifetime = self._lifetime if token.lifetime is None else token.lifetime
        self._token = token.value
        self._expires = self._clock() + usable_for(lifetime, self._margin)
        self._generation += 1
        return token.value
