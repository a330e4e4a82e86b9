"""The contract between the runtime and a domain's background tasks (below domains and drivers)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from agent.events import Event

T = TypeVar("T")


class TaskContext(Protocol):
    """What the runtime gives a domain's background task: the state directory, emit, queries."""

    @property
    def state_dir(self) -> Path:
        """The agent's state directory."""
        ...

    async def emit(self, event: Event) -> bool:
        """Journal `event` durably; returns (True if new) only after the commit."""
        ...

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the journal's connection (in its writer) and return its result."""
        ...

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on a read-only connection, off the writer (it must not write)."""
        ...
