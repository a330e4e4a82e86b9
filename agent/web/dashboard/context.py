"""What the dashboard's routes share: the agent's read side, its sessions and its settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosqlite
from aiohttp import web

from agent.journal import queries
from agent.reprocessing.config import ReprocessingConfig
from agent.web.context import Query
from agent.web.dashboard.sessions import Session, SessionStore
from agent.web.metrics import Observe


class OperatorDb:
    """One aiosqlite connection for the outbox operator functions, used by one caller at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._db: aiosqlite.Connection | None = None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection (opened on first use); no other request uses it meanwhile."""
        async with self._lock:
            if self._db is None:
                stack = AsyncExitStack()
                self._db = await stack.enter_async_context(queries.connect(self.path))
                self._stack = stack
            yield self._db

    async def close(self) -> None:
        """Close the connection, if it was opened."""
        async with self._lock:
            if self._stack is not None:
                await self._stack.aclose()
            self._stack, self._db = None, None


@dataclass(slots=True)
class Dashboard:
    """Everything a dashboard page reads from, and who may see or change what."""

    observe: Observe
    query: Query
    database: Path
    sessions: SessionStore
    read_only_open: bool
    reprocessing: Sequence[ReprocessingConfig] = ()
    interval: float = 1.0  # seconds between two looks for a change on a live page
    operator_db: OperatorDb = field(init=False)
    last_uses: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.operator_db = OperatorDb(self.database)

    @property
    def zone(self) -> tzinfo | None:
        """Times are shown in the endoscopy centre's zone (else the machine's)."""
        return ZoneInfo(self.reprocessing[0].timezone) if self.reprocessing else None


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at a page: a logged-in operator (with a session) or an anonymous wall screen."""

    session: Session | None

    @property
    def operator(self) -> bool:
        """Whether actions (forms) and sensitive details are shown."""
        return self.session is not None

    @property
    def csrf(self) -> str:
        """The session's CSRF token, for the forms; '' when not logged in."""
        return self.session.csrf if self.session else ""


DASHBOARD_KEY: web.AppKey[Dashboard] = web.AppKey("dashboard", Dashboard)
