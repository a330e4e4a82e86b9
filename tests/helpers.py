"""Small waiting helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import random
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ZHEJIANG_KEY = "ak-edge"
ZHEJIANG_SECRET = "sk-very-secret-value"
DEMO = Path(__file__).parents[1] / "config" / "demo.toml"


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll `probe` until it returns something truthy; return that."""
    async with asyncio.timeout(timeout):
        while not (result := await probe()):
            await asyncio.sleep(0.01)
    return result


def demo_port_offset(*more: int) -> int:
    """A random offset at which every port of config/demo.toml (and `more`) is free now."""
    # Random, not fixed: two test runs on one machine (or a running demo) must not collide.
    text = DEMO.read_text(encoding="utf-8")
    ports = {int(p) for p in re.findall(r"(?:port = |127\.0\.0\.1:)(\d+)", text)} | set(more)
    for _ in range(100):
        offset = random.randrange(100, 400) * 100
        if all(_free(port + offset) for port in ports):
            return offset
    raise RuntimeError("no free range of ports for the demo's configuration")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
