"""Small waiting helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

ZHEJIANG_KEY = "ak-edge"
ZHEJIANG_SECRET = "sk-very-secret-value"


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll `probe` until it returns something truthy; return that."""
    async with asyncio.timeout(timeout):
        while not (result := await probe()):
            await asyncio.sleep(0.01)
    return result
