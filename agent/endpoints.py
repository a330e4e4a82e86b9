"""What a plugin serves on its platform listener, and how its handlers reach the journal: the
contract between a platform (which declares routes) and agent.web (which serves them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.events import Event
from agent.listener_config import PlatformListener

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Emit = Callable[[Event], Awaitable[bool]]  # journal an event; True once committed
Query = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]  # run a read
EMIT_KEY: web.AppKey[Emit] = web.AppKey("emit")
QUERY_KEY: web.AppKey[Query] = web.AppKey("query")
# A platform's signature check: True if the request is signed right, False for 401; it may
# raise agent.web.bodies.Refused for another status (403 an unknown key, 503 cannot verify now).
# It may read the body: the handler reads it again.
Verify = Callable[[web.Request], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class RouteDef:
    """One route a plugin serves: `handler` reads the journal (QUERY_KEY) or emits (EMIT_KEY)."""

    method: str
    path: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What a plugin serves on its listener: where and under which rules, which routes, and an
    optional signature check run after the address, size and token checks."""

    settings: PlatformListener
    routes: list[RouteDef]
    verify: Verify | None = None
    close: Callable[[], Awaitable[None]] | None = None  # run when the listener stops
