"""The journal's retention: records older than their keep period deleted in small batches, each
its own short write, then the freed pages handed back to the filesystem a few at a time
(incremental vacuum), so a multi-year journal stays bounded without stalling intake."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
# (conn, the cut-off in unix seconds, at most this many rows) -> (rows deleted, more may be due)
Purge = Callable[[sqlite3.Connection, float, int], tuple[int, bool]]
Run = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
INCREMENTAL = 2  # PRAGMA auto_vacuum
FRESH = 3600.0  # seconds: a file stored again this recently is not removed by the retention


@dataclass(frozen=True, slots=True)
class Settings:
    """How long the journal's own records are kept and how the purge paces itself."""

    days: float  # raw events, settled messages, resolved failures, acknowledged alerts, audit
    batch: int = 100  # rows per transaction
    pause: float = 0.1  # seconds between two transactions of a pass: intake commits between
    vacuum_pages: int = 64  # pages returned to the filesystem per step; 0: never


def iso(moment: float) -> str:
    """Unix seconds as the journal's ISO UTC text."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class Walk:
    """Rows of `table` oldest first (by rowid), from where the previous batch of this pass
    stopped, so rows something still needs stay behind without being looked at again: each
    batch deletes those of the next `limit` written before the cut-off that `keep` (an SQL
    condition on the row) does not hold, after `cascade` removed what depends on them."""

    table: str
    at: str  # the column saying when the row was written: ISO UTC text, or unix seconds
    keep: str = ""
    seconds: bool = False  # `at` holds unix seconds
    cascade: Callable[[sqlite3.Connection, list[int]], None] | None = None
    after: int = 0

    def __call__(self, conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
        """One batch: (rows deleted, whether rows past this batch may be due too)."""
        rows = conn.execute(
            f"SELECT rowid, {self.at} FROM {self.table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (self.after, limit),
        ).fetchall()
        if not rows:
            return 0, False
        cutoff: float | str = before if self.seconds else iso(before)
        old = [rowid for rowid, at in rows if at is not None and at < cutoff]
        self.after = rows[-1][0]
        if old and self.keep:
            marks = ", ".join("?" * len(old))
            old = [
                rowid
                for (rowid,) in conn.execute(
                    f"SELECT rowid FROM {self.table} WHERE rowid IN ({marks})"
                    f" AND NOT ({self.keep})",
                    old,
                )
            ]
        if old:
            if self.cascade is not None:
                self.cascade(conn, old)
            conn.executemany(f"DELETE FROM {self.table} WHERE rowid = ?", [(r,) for r in old])
        # A row written while the clock was ahead only delays the ones behind it.
        last = rows[-1][1]
        return len(old), len(rows) == limit and last is not None and last < cutoff


def event_walk() -> Walk:
    """Raw events: kept while a pending, in-flight or dead message may need its event again (an
    edit, a replay), and while a handler failure on it is not resolved (the replay reads it)."""
    return Walk(
        "events",
        "received_at",
        keep="EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = events.id"
        " AND o.state IN ('pending', 'inflight', 'dead'))"
        " OR EXISTS (SELECT 1 FROM handler_failures f WHERE f.event_id = events.id"
        " AND f.resolved_at IS NULL)",
    )


def settled_messages(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
    """Delivered and discarded messages settled before `before` (never pending, dead)."""
    deleted = conn.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
        " WHERE state IN ('delivered', 'discarded') AND settled_at < ? LIMIT ?)",
        (before, limit),
    ).rowcount
    return deleted, deleted == limit


def resolved_failures(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
    """Handler failures resolved before `before`."""
    deleted = conn.execute(
        "DELETE FROM handler_failures WHERE id IN (SELECT id FROM handler_failures"
        " WHERE resolved_at < ? LIMIT ?)",
        (before, limit),
    ).rowcount
    return deleted, deleted == limit


def acknowledged_alerts(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
    """Alerts raised and acknowledged before `before` (an open alert is kept however old)."""
    deleted = conn.execute(
        "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts"
        " WHERE acknowledged_at < ? AND at < ? LIMIT ?)",
        (before, before, limit),
    ).rowcount
    return deleted, deleted == limit


def audit_records(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
    """Operator audit records (who acted, who ran a lookback) older than `before`."""
    deleted = conn.execute(
        "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY id LIMIT ?)",
        (before, limit),
    ).rowcount
    return deleted, deleted == limit


@runtime_checkable
class LeavesFiles(Protocol):
    """A purge whose deleted rows named the agent's own copies of files (paths relative to the
    state directory): the keeper removes them off the writer, after the batch committed."""

    def take_files(self) -> list[str]:
        """The files the batches so far left without a row, each given once."""
        ...


# (conn, rowids about to go) -> files (relative to the state directory) no row names after them
DropFiles = Callable[[sqlite3.Connection, list[int]], list[str]]


@dataclass(slots=True)
class FileWalk:
    """A Walk whose rows name files: `drop` removes what depends on the rows about to go and
    says which files nothing names any more; the keeper deletes them (LeavesFiles)."""

    table: str
    at: str
    keep: str
    drop: DropFiles
    walk: Walk = field(init=False)
    left: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.walk = Walk(self.table, self.at, keep=self.keep, cascade=self._cascade)

    def __call__(self, conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
        """One batch of the walk."""
        return self.walk(conn, before, limit)

    def take_files(self) -> list[str]:
        """The files the batches so far left without a row, each given once."""
        taken, self.left = self.left, []
        return taken

    def _cascade(self, conn: sqlite3.Connection, rowids: list[int]) -> None:
        self.left += self.drop(conn, rowids)


def remove_files(root: Path, paths: Iterable[str], now: float | None = None) -> int:
    """Delete the files at `paths` relative to `root` (never one outside it, nor one written or
    stored again in the last FRESH seconds: a record naming it may be on its way to the
    journal); how many went."""
    base = root.resolve()
    since = (time.time() if now is None else now) - FRESH
    removed = 0
    for relative in paths:
        target = (base / relative).resolve()
        if not target.is_relative_to(base) or target == base:
            continue
        try:
            if target.stat().st_mtime > since:
                continue
            target.unlink()
        except OSError:  # gone already, or not ours to delete: the row went all the same
            continue
        removed += 1
    return removed


def vacuum_step(conn: sqlite3.Connection, pages: int) -> int:
    """Return up to `pages` free pages to the filesystem, keeping `pages` for the next inserts;
    how many were returned (0 without incremental auto-vacuum)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        return 0
    free: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
    step = min(pages, free - pages)
    if step <= 0:
        return 0
    for _ in range(step):  # Python's sqlite3 steps a pragma once: one page per call
        conn.execute("PRAGMA incremental_vacuum(1)")
    left: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return free - left


@dataclass(slots=True)
class Pass:
    """What one retention pass removed: rows per record kind, pages returned, transactions, and
    the longest transaction of each kind (seconds, with its wait for the writer)."""

    rows: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    writes: int = 0
    files: int = 0  # the agent's copies of files deleted with their rows
    slowest: dict[str, float] = field(default_factory=dict)

    def timed(self, kind: str, started: float) -> None:
        """Count one transaction of `kind` begun at `started` (perf_counter)."""
        self.writes += 1
        took = time.perf_counter() - started
        self.slowest[kind] = max(self.slowest.get(kind, 0.0), took)


class JournalKeeper:
    """Runs retention passes through `run` (the journal's writer): each kind batch by batch
    with a pause between batches, then the incremental vacuum step by step."""

    def __init__(
        self,
        run: Run,
        settings: Settings,
        domains: Mapping[str, tuple[float, Callable[[], Purge]]] | None = None,
        clock: Callable[[], float] = time.time,
        files_root: Path | None = None,
    ) -> None:
        self.run = run
        self.settings = settings
        self.domains = dict(domains or {})  # kind -> (days, a pass's purge): a domain's records
        self.clock = clock
        self.files_root = files_root  # where LeavesFiles paths are; None: files are left alone

    def kinds(self) -> list[tuple[str, float, Purge]]:
        """(kind, days kept, purge) in the order a pass runs them."""
        days = self.settings.days
        own: list[tuple[str, float, Purge]] = [
            ("messages", days, settled_messages),
            ("events", days, event_walk()),
            ("handler_failures", days, resolved_failures),
            ("alerts", days, acknowledged_alerts),
            ("audit", days, audit_records),
        ]
        return own + [(kind, d, make()) for kind, (d, make) in self.domains.items()]

    async def run_pass(self) -> Pass:
        """Delete what is past its keep period, then vacuum; what was removed."""
        done = Pass()
        now = self.clock()
        for kind, days, purge in self.kinds():
            before = now - days * 86400
            while True:
                started = time.perf_counter()
                deleted, more = await self.run(partial(_batch, purge, before, self.settings.batch))
                done.timed(kind, started)
                if deleted:
                    done.rows[kind] = done.rows.get(kind, 0) + deleted
                if isinstance(purge, LeavesFiles) and self.files_root is not None:
                    left = purge.take_files()
                    if left:  # file I/O off the writer thread and the event loop
                        done.files += await asyncio.to_thread(remove_files, self.files_root, left)
                if not more:
                    break
                await asyncio.sleep(self.settings.pause)
        pages = self.settings.vacuum_pages
        while pages:
            started = time.perf_counter()
            freed = await self.run(partial(vacuum_step, pages=pages))
            done.timed("vacuum", started)
            done.pages += freed
            if freed < pages:
                break
            await asyncio.sleep(self.settings.pause)
        return done


def _batch(purge: Purge, before: float, limit: int, conn: sqlite3.Connection) -> tuple[int, bool]:
    return purge(conn, before, limit)
