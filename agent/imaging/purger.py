"""The spool's background keeper: watches the free space (disk pressure levels) and deletes the
files of images the retention policy lets go, in small batches, off the event loop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import utc_text
from agent.imaging.plans import Offer
from agent.imaging.retention import (
    PRESSURE,
    PURGE,
    Candidate,
    Policy,
    candidates,
    last_purged,
    purged_files,
    select,
)
from agent.imaging.scheduler import Clock, SystemClock
from agent.tasks import TaskContext
from agent.vocabulary.spool import SpoolLayout, spool_file

log = structlog.get_logger(__name__)

MIB = 1024 * 1024


def free_mb(path: Path) -> float:
    """Free space for unprivileged writers on the filesystem of `path` (or its nearest parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / MIB


class SpoolKeeper:
    """At start, the files a stop left behind; then every purge_interval: the disk level (an
    event when it changes), then one retention pass (at the critical level, one that ignores
    keep_days). It reads through the journal's read-only connections, never its writer."""

    def __init__(
        self,
        name: str,
        config: ImagingConfig,
        clock: Clock | None = None,
        free: Callable[[Path], float] = free_mb,
    ) -> None:
        self.name = name
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.free = free
        self.level: str | None = None  # as last journaled; None: not yet since start
        self.purged = 0  # files deleted since start

    async def run(self, ctx: TaskContext) -> None:
        """Check and purge until cancelled."""
        await self.remove_leftovers(ctx, SpoolLayout.of(ctx.state_dir).root)
        while True:
            await self.tick(ctx)
            await self.clock.sleep(self.config.purge_interval)

    async def tick(self, ctx: TaskContext) -> int:
        """One disk check and one retention pass; how many files were deleted."""
        root = SpoolLayout.of(ctx.state_dir).root
        level = await self.check(ctx, root)
        if not self.config.retention:
            return 0
        deleted = await self.purge_pass(ctx, root, critical=level == "critical")
        if deleted and level != "ok":
            await self.check(ctx, root)  # purging may have brought the level down
        return deleted

    async def remove_leftovers(self, ctx: TaskContext, root: Path) -> int:
        """Delete the files of the latest purge that still exist (the agent stopped between its
        commit and the deletes); how many."""
        files = [spool_file(f, root) for f in await ctx.read(last_purged)]
        count = await asyncio.to_thread(_unlink_existing, files)
        if count:
            log.info("imaging.purge_completed", files=count)
        return count

    def level_of(self, free: float) -> str:
        """The pressure level at `free` MiB."""
        c = self.config
        if c.disk_critical_free_mb and free < c.disk_critical_free_mb:
            return "critical"
        if c.disk_warning_free_mb and free < c.disk_warning_free_mb:
            return "warning"
        return "ok"

    async def check(self, ctx: TaskContext, root: Path) -> str:
        """Measure the free space; journal a pressure event when the level changed."""
        free = await asyncio.to_thread(self.free, root)
        level = self.level_of(free)
        if level != self.level:
            payload = {
                "level": level,
                "free_mb": round(free),
                "warning_free_mb": self.config.disk_warning_free_mb,
                "critical_free_mb": self.config.disk_critical_free_mb,
            }
            await ctx.emit(Event(PRESSURE, self.name, payload, occurred_at=self.clock.now()))
            if level != "ok" or self.level is not None:
                emit_log = log.warning if level != "ok" else log.info
                emit_log("imaging.disk_pressure", level=level, free_mb=round(free))
            self.level = level
        return level

    def policy(self, now: datetime, *, critical: bool) -> Policy:
        """The cut-offs of a pass at `now` (critical: whatever is delivered, at once)."""
        keep = timedelta(0) if critical else timedelta(days=self.config.keep_days)
        pull = timedelta(days=self.config.pull_keep_days)
        images = frozenset(u for u, o in self.config.plans().items() if Offer.IMAGES in o)
        return Policy(
            image_uplinks=images,
            received_before=utc_text(now - keep),
            delivered_before=(now - keep).timestamp(),
            pull_before=utc_text(now - pull),
        )

    async def purge_pass(self, ctx: TaskContext, root: Path, *, critical: bool) -> int:
        """Walk the unpurged images old enough, batch by batch; delete what may go."""
        now = self.clock.now()
        policy = self.policy(now, critical=critical)
        deleted = 0
        async for chosen in self.eligible(ctx, policy):
            deleted += await self._purge(ctx, root, policy, chosen, now=now, critical=critical)
        if deleted:  # once a pass, not once a batch
            log.info("imaging.purged", files=deleted, critical=critical or None)
        return deleted

    async def eligible(self, ctx: TaskContext, policy: Policy) -> AsyncIterator[list[Candidate]]:
        """The images `policy` lets go, a batch at a time (read off the writer)."""
        after = ("", "")
        while True:
            batch, chosen = await ctx.read(
                partial(_batch, after=after, policy=policy, limit=self.config.purge_batch)
            )
            if not batch:
                return
            after = batch[-1][:2]
            if chosen:
                yield chosen

    async def _purge(
        self,
        ctx: TaskContext,
        root: Path,
        policy: Policy,
        chosen: list[tuple[str, str, str]],
        *,
        now: datetime,
        critical: bool,
    ) -> int:
        proposed = [[sop, path] for _, sop, path in chosen]
        payload: dict[str, Any] = {
            "critical": critical,
            "received_before": policy.received_before,
            "delivered_before": policy.delivered_before,
            "pull_before": policy.pull_before,
            "images": proposed,
        }
        await ctx.emit(Event(PURGE, self.name, payload, occurred_at=now))
        # Only files the journal now says are purged: the handler checked each again.
        files = await ctx.read(partial(purged_files, proposed=proposed))
        count = await asyncio.to_thread(_unlink, [spool_file(f, root) for f in files])
        self.purged += count
        return count


def _batch(
    conn: Any, *, after: tuple[str, str], policy: Policy, limit: int
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    rows = candidates(conn, after, policy.received_before, limit)
    return rows, select(conn, rows, policy)


def _unlink_existing(files: list[str]) -> int:
    """Delete those of `files` that exist; how many did."""
    count = 0
    for file in files:
        path = Path(file)
        if path.exists():
            path.unlink(missing_ok=True)
            count += 1
    return count


def _unlink(files: list[str]) -> int:
    """Delete `files` (already gone counts: a pass interrupted after the commit); how many."""
    for file in files:
        Path(file).unlink(missing_ok=True)
    return len(files)
