"""The imaging domain's clock: journals "study stable" and "statistics due" events when due."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable
from datetime import datetime, time, timedelta
from functools import partial
from typing import Protocol
from zoneinfo import ZoneInfo

import structlog

from agent.events import Event, utcnow
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import STABLE, STATISTICS_DUE, utc_text
from agent.imaging.statistics import has_exams
from agent.tasks import TaskContext

log = structlog.get_logger(__name__)
# Deterministic event ids: the same due moment journals once, however often it is seen.
NAMESPACE = uuid.UUID("5d1f1c2e-8a4b-5b7e-9c3d-2f6a0e4b7c91")
SCAN_LIMIT = 500  # studies per scan; the rest are found by the next one


class Clock(Protocol):
    """Wall time and waiting, injectable so tests never wait on the real clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait `seconds`."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return utcnow()

    def sleep(self, seconds: float) -> Awaitable[None]:
        """asyncio.sleep."""
        return asyncio.sleep(seconds)


def quiet_studies(conn: sqlite3.Connection, cutoff: str) -> list[tuple[str, str]]:
    """(study_uid, last_received) of receiving studies with nothing new since `cutoff`."""
    return list(
        conn.execute(
            "SELECT study_uid, last_received FROM im_studies"
            " WHERE state = 'receiving' AND last_received <= ? ORDER BY last_received LIMIT ?",
            (cutoff, SCAN_LIMIT),
        )
    )


class ImagingScheduler:
    """Every scan_interval: quiet studies become stable; at each statistics time: statistics."""

    def __init__(self, name: str, config: ImagingConfig, clock: Clock | None = None) -> None:
        self.name = name
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.zone = ZoneInfo(config.timezone)
        self._day = ""  # the local date `_done` is about
        self._done: set[str] = set()  # statistics event ids journaled that day
        self._first_tick = True

    async def run(self, ctx: TaskContext) -> None:
        """Scan and fire statistics slots until cancelled (slots missed today fire at once)."""
        while True:
            await self.tick(ctx)
            await self.clock.sleep(self.config.scan_interval)

    async def tick(self, ctx: TaskContext) -> None:
        """One scan: emit what is due now."""
        now = self.clock.now()
        cutoff = utc_text(now - timedelta(seconds=self.config.quiet_seconds))
        for study_uid, last_received in await ctx.query(partial(quiet_studies, cutoff=cutoff)):
            await ctx.emit(
                Event(
                    STABLE,
                    self.name,
                    {"study_uid": study_uid, "last_received": last_received},
                    occurred_at=now,
                    id=str(
                        uuid.uuid5(NAMESPACE, f"{self.name}:stable:{study_uid}:{last_received}")
                    ),
                )
            )
        due = self.due_statistics(now)
        if self._first_tick:
            self._first_tick = False
            if due and not await ctx.query(has_exams):
                # A first start with no exam has nothing to report: the next slot is the first.
                self._done.update(e.id for e in due)
                due = []
        # Slots missed while down report what the latest of them reports: only it is journaled.
        self._done.update(e.id for e in due[:-1])
        for event in due[-1:]:
            if await ctx.emit(event):
                log.info(
                    "imaging.statistics_due", date=event.payload["date"], slot=event.payload["slot"]
                )
            self._done.add(event.id)

    def due_statistics(self, now: datetime) -> list[Event]:
        """Today's statistics slots (local time) that have passed and were not emitted yet."""
        local = now.astimezone(self.zone)
        today = local.date().isoformat()
        if today != self._day:
            self._day, self._done = today, set()
        due = []
        for slot in sorted(self.config.statistics_times):
            at = datetime.combine(local.date(), time.fromisoformat(slot), self.zone)
            event_id = str(uuid.uuid5(NAMESPACE, f"{self.name}:statistics:{today}:{slot}"))
            if at <= local and event_id not in self._done:
                due.append(
                    Event(
                        STATISTICS_DUE,
                        self.name,
                        {"date": today, "slot": slot},
                        occurred_at=now,
                        id=event_id,
                    )
                )
        return due
