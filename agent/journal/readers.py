"""Reads off the writer: read-only connections to the journal, each in a thread of its own, so a
busy screen, a scrape or a platform's query never waits in the writer's queue (and never delays
an acknowledgement). WAL gives each read a consistent snapshot beside the writer's commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.request import pathname2url

from agent.errors import JournalClosedError, JournalError

T = TypeVar("T")
READ_PRAGMAS = (
    "PRAGMA query_only=1",
    "PRAGMA busy_timeout=10000",
    # A lookback walks a few thousand cycles spread over years of pages: keep them at hand.
    "PRAGMA cache_size=-32768",
    "PRAGMA mmap_size=268435456",
)


class Readers:
    """A small pool of read-only connections to the journal at `path` (opened on first use)."""

    def __init__(self, path: Path, threads: int = 4) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="journal-reader")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on a read-only connection in a reader thread; it must not write."""
        if self._closed:
            raise JournalClosedError(f"{self.path}: journal readers are closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(self._call, fn))

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        try:
            return fn(conn)
        finally:
            if conn.in_transaction:  # a read left open would pin its snapshot (and the WAL)
                conn.rollback()

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{pathname2url(str(self.path))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            for pragma in READ_PRAGMAS:
                conn.execute(pragma)
        except sqlite3.Error as err:
            raise JournalError(f"{self.path}: cannot open for reading: {err}") from err
        with self._lock:
            self._opened.append(conn)
        return conn

    async def close(self) -> None:
        """Wait for the reads under way, then close every connection."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
