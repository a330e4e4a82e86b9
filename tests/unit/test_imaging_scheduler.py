"""The imaging scheduler on a fake clock: quiet studies become stable, statistics fire once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.events import Event
from agent.imaging.handler import ImagingHandler
from agent.imaging.scheduler import ImagingScheduler
from agent.journal.writer import Journal
from tests.unit.test_imaging_index import STUDY, config, exam, exam_doc, stored

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


class FakeClock:
    """Time moves only when the test says; `sleep` parks the scheduler until then."""

    def __init__(self, now: datetime) -> None:
        self.current = now
        self.sleeps: list[float] = []
        self._parked: asyncio.Future[None] | None = None
        self._asleep = asyncio.Event()

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._parked = asyncio.get_running_loop().create_future()
        self._asleep.set()
        await self._parked

    async def asleep(self) -> None:
        """Wait (bounded) until the scheduler has finished its scan and sleeps."""
        await asyncio.wait_for(self._asleep.wait(), timeout=5)

    async def advance(self, seconds: float) -> None:
        """Move time on, wake the scheduler and wait until its next scan is done."""
        await self.asleep()
        self._asleep.clear()
        self.current += timedelta(seconds=seconds)
        assert self._parked is not None
        self._parked.set_result(None)
        await self.asleep()


@dataclass
class Context:
    """A TaskContext on a real journal (the imaging handler behind it)."""

    journal: Journal
    state_dir: Path
    emitted: list[Event] = field(default_factory=list)

    async def emit(self, event: Event) -> bool:
        self.emitted.append(event)
        return (await self.journal.ingest([event]))[0]

    async def query(self, fn: Any) -> Any:
        return await self.journal.run(fn)

    async def read(self, fn: Any) -> Any:
        return await self.journal.run(fn)  # these tasks read little: the writer is fine here

    def kinds(self) -> list[tuple[str, dict[str, Any]]]:
        return [(e.kind, e.payload) for e in self.emitted]


@pytest.fixture
async def ctx(open_journal, tmp_path) -> Context:
    handler = ImagingHandler("imaging", config(quiet_seconds=60, statistics_times=["12:00"]))
    return Context(await open_journal.open(handlers=(handler,)), tmp_path)


async def running(ctx: Context, clock: FakeClock, **options: Any) -> asyncio.Task[None]:
    settings = config(quiet_seconds=60, scan_interval=5, **options)
    task = asyncio.create_task(ImagingScheduler("imaging", settings, clock).run(ctx))
    await clock.asleep()
    return task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_study_becomes_stable_once_quiet_for_quiet_seconds(ctx):
    await ctx.journal.ingest([exam(exam_doc(accessionNo="ACC001")), stored("1", at=T0)])
    clock = FakeClock(T0 + timedelta(seconds=1))
    task = await running(ctx, clock, statistics_times=["12:00"])
    try:
        assert ctx.emitted == []
        await clock.advance(30)
        await ctx.journal.ingest([stored("2", number=2, at=clock.current)])  # 31 s: not quiet
        await clock.advance(40)
        assert ctx.emitted == []  # 71 s after the first, 40 s after the last instance
        await clock.advance(25)
        assert ctx.kinds() == [
            (
                "imaging.study_stable",
                {
                    "study_uid": STUDY,
                    "last_received": (T0 + timedelta(seconds=31)).isoformat(
                        timespec="microseconds"
                    ),
                },
            )
        ]
        await clock.advance(5)
        assert len(ctx.emitted) == 1  # stable studies are not scanned again
    finally:
        await stopped(task)
    assert clock.sleeps == [5.0] * len(clock.sleeps)
    rows = await ctx.journal.run(
        lambda conn: conn.execute("SELECT kind, payload FROM outbox ORDER BY id").fetchall()
    )
    assert [kind for kind, _ in rows] == ["exam.push", "dicom.instance", "dicom.instance"]
    assert json.loads(rows[0][1])["study"]["instance_count"] == 2


async def test_statistics_fire_at_their_local_time_once_a_day(ctx):
    await ctx.journal.ingest([exam(exam_doc(time="2026-11-23 09:00:00"))])
    clock = FakeClock(datetime(2026, 11, 23, 3, 59, 50, tzinfo=UTC))  # 11:59:50 local
    task = await running(ctx, clock, statistics_times=["12:00", "20:00"])
    try:
        assert ctx.emitted == []
        await clock.advance(5)
        assert ctx.emitted == []
        await clock.advance(5)  # 12:00:00
        assert ctx.kinds() == [("imaging.statistics_due", {"date": "2026-11-23", "slot": "12:00"})]
        await clock.advance(5)
        await clock.advance(5)
        assert len(ctx.emitted) == 1
        await clock.advance(24 * 3600)  # the next day, 12:00:20: its noon slot is due
        assert [e.payload for e in ctx.emitted[1:]] == [{"date": "2026-11-24", "slot": "12:00"}]
    finally:
        await stopped(task)
    rows = await ctx.journal.run(
        lambda conn: conn.execute("SELECT dedupe_key, payload FROM outbox").fetchall()
    )
    keys = ["statistics:2026-11-23:12:00", "statistics:2026-11-24:12:00"]
    assert [key for key, _ in rows] == keys
    item = {"examDate": "2026-11-23", "examClass": "CT", "accordCount": 1}
    assert json.loads(rows[0][1])["items"] == [item]
    # The 24th's first slot also sends the 23rd's final counts (no exam on the 24th itself).
    assert json.loads(rows[1][1])["dates"] == ["2026-11-23", "2026-11-24"]
    assert json.loads(rows[1][1])["items"] == [item]


async def test_a_slot_missed_while_down_fires_at_start_and_only_once(ctx):
    await ctx.journal.ingest([exam(exam_doc())])
    clock = FakeClock(datetime(2026, 11, 23, 13, 0, tzinfo=UTC))  # 21:00 local, both slots past
    task = await running(ctx, clock, statistics_times=["20:00", "12:00"])
    await stopped(task)
    slots = [e.payload["slot"] for e in ctx.emitted]
    assert slots == ["20:00"]  # the latest reports what the missed 12:00 would have
    # A restart the same day: the same deterministic ids, so nothing is journaled twice.
    task = await running(ctx, FakeClock(clock.current + timedelta(minutes=5)))
    await stopped(task)
    events = await ctx.journal.run(
        lambda conn: conn.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'imaging.statistics_due'"
        ).fetchone()[0]
    )
    assert events == 1
    assert len(ctx.emitted) == 2  # re-emitted, refused as known by the journal


async def test_a_first_start_with_no_exam_waits_for_the_next_slot(ctx):
    clock = FakeClock(datetime(2026, 11, 23, 14, 58, tzinfo=UTC))  # 22:58 local, both slots past
    task = await running(ctx, clock, statistics_times=["12:00", "20:00"])
    try:
        assert ctx.emitted == []
        await clock.advance(13 * 3600 + 2 * 60 + 5)  # the next day, 12:00:05
        assert ctx.kinds() == [("imaging.statistics_due", {"date": "2026-11-24", "slot": "12:00"})]
    finally:
        await stopped(task)


async def test_before_the_first_slot_nothing_is_caught_up(ctx):
    clock = FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))  # 09:00 local
    task = await running(ctx, clock, statistics_times=["12:00"])
    await stopped(task)
    assert ctx.emitted == []
