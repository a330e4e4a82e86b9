"""The spool's keeper on a real journal and real files: what retention purges, what it never
does, and the disk pressure levels (the free space is faked at the statvfs boundary)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.events import Event
from agent.imaging.audit import audit_spool
from agent.imaging.handler import ImagingHandler
from agent.imaging.purger import SpoolKeeper
from agent.journal.alerts import open_alerts
from agent.journal.readers import Readers
from agent.journal.writer import Journal
from tests.unit.test_imaging_index import STUDY, config, exam, exam_doc, stored

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
DAY = 86400.0


class Clock:
    """A wall clock the test sets."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the tests call tick() themselves")


@dataclass
class Site:
    """A journal with the imaging handler, its spool folder and a TaskContext over both."""

    journal: Journal
    state_dir: Path
    readers: Readers
    free: float = 100_000.0  # MiB the fake statvfs reports

    async def emit(self, event: Event) -> bool:
        return (await self.journal.ingest([event]))[0]

    async def query(self, fn: Any) -> Any:
        raise AssertionError("the keeper reads off the writer: ctx.read, not ctx.query")

    async def read(self, fn: Any) -> Any:
        return await self.readers.run(fn)

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self.journal.run(lambda conn: conn.execute(sql, args).fetchall())

    async def receive(self, *sops: str) -> dict[str, Path]:
        """Images of one study written to the spool and journaled; made stable with its exam."""
        files = {}
        for n, sop in enumerate(sops, start=1):
            file = self.state_dir / "spool" / "2026" / "11" / "23" / f"{sop}.dcm"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(b"DICM" * 10)
            files[sop] = file
            await self.emit(stored(sop, number=n, path=str(file)))
        await self.emit(exam(exam_doc(accessionNo="ACC001")))
        ((last,),) = await self.rows("SELECT last_received FROM im_studies")
        payload = {"study_uid": STUDY, "last_received": last}
        when = T0 + timedelta(seconds=61)
        await self.emit(Event("imaging.study_stable", "imaging", payload, received_at=when))
        return files

    async def settle(self, sop: str, state: str, at: datetime) -> None:
        """The image's message as the dispatcher leaves it: delivered or dead, at `at`."""
        await self.journal.run(
            lambda conn: conn.execute(
                "UPDATE outbox SET state = ?, settled_at = ? WHERE kind = 'dicom.instance'"
                " AND json_extract(payload, '$.sop_uid') = ?",
                (state, at.timestamp(), f"{STUDY}.1.{sop}"),
            )
        )

    async def purged(self) -> list[str]:
        rows = await self.rows(
            "SELECT sop_uid FROM im_instances WHERE purged_at IS NOT NULL ORDER BY sop_uid"
        )
        return [r[0].removeprefix(f"{STUDY}.1.") for r in rows]

    async def alerts(self) -> list[tuple[str, str]]:
        """(code, severity) of the open alerts, oldest first."""
        opened = await self.journal.run(open_alerts)
        return [(str(a["code"]), str(a["severity"])) for a in reversed(opened)]


@pytest.fixture
async def site(open_journal, tmp_path) -> AsyncIterator[Site]:
    handler = ImagingHandler("imaging", config())
    journal = await open_journal.open(handlers=(handler,))
    readers = Readers(journal.path)
    yield Site(journal, tmp_path, readers)
    await readers.close()


def keeper(site: Site, clock: Clock, **options: Any) -> SpoolKeeper:
    settings = config(keep_days=30, **options)
    return SpoolKeeper("imaging", settings, clock, free=lambda _root: site.free)


async def test_a_delivered_image_loses_its_file_keep_days_after_delivery_and_keeps_its_row(site):
    files = await site.receive("1", "2")
    delivered = T0 + timedelta(days=1)
    await site.settle("1", "delivered", delivered)
    clock = Clock(delivered + timedelta(days=29))
    spool_keeper = keeper(site, clock)
    assert await spool_keeper.tick(site) == 0  # 29 days after delivery: kept
    assert files["1"].exists()
    clock.current = delivered + timedelta(days=30, seconds=1)
    assert await spool_keeper.tick(site) == 1
    assert not files["1"].exists()
    assert files["2"].exists()  # its message is still pending
    assert await site.purged() == ["1"]
    assert len(await site.rows("SELECT * FROM im_instances")) == 2  # the row stays
    assert await spool_keeper.tick(site) == 0  # a second pass has nothing left to do


async def test_an_image_with_a_dead_or_pending_message_is_never_purged_even_at_critical(site):
    files = await site.receive("1", "2", "3")
    await site.settle("1", "dead", T0)
    await site.settle("3", "delivered", T0)
    site.free = 10.0  # far below critical
    clock = Clock(T0 + timedelta(days=400))
    assert await keeper(site, clock).tick(site) == 1
    assert [sop for sop, file in files.items() if file.exists()] == ["1", "2"]
    assert await site.purged() == ["3"]


async def test_images_not_yet_forwarded_are_kept(site):
    file = site.state_dir / "spool" / "x.dcm"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"DICM")
    await site.emit(stored("9", path=str(file)))  # no exam, never stable: never queued
    site.free = 10.0
    assert await keeper(site, Clock(T0 + timedelta(days=400))).tick(site) == 0
    assert file.exists()


async def test_pull_keep_days_keeps_delivered_images_for_the_pull_services(site):
    files = await site.receive("1")
    await site.settle("1", "delivered", T0)
    clock = Clock(T0 + timedelta(days=40))
    assert await keeper(site, clock, pull_keep_days=60).tick(site) == 0
    assert files["1"].exists()
    clock.current = T0 + timedelta(days=61)
    assert await keeper(site, clock, pull_keep_days=60).tick(site) == 1


async def test_warning_then_critical_fire_in_order_critical_purges_early_and_both_clear(site):
    files = await site.receive("1", "2")
    await site.settle("1", "delivered", T0 + timedelta(hours=1))
    clock = Clock(T0 + timedelta(days=1))
    spool_keeper = keeper(site, clock, disk_warning_free_mb=500, disk_critical_free_mb=200)
    assert await spool_keeper.tick(site) == 0
    assert await site.alerts() == []
    site.free = 400.0
    assert await spool_keeper.tick(site) == 0  # warning: alert only, keep_days still holds
    assert await site.alerts() == [("disk_space_warning", "warning")]
    assert files["1"].exists()
    site.free = 150.0
    assert await spool_keeper.tick(site) == 1  # critical: delivered one day ago, purged now
    assert await site.alerts() == [
        ("disk_space_warning", "warning"),
        ("disk_space_critical", "critical"),
    ]
    assert not files["1"].exists() and files["2"].exists()
    site.free = 300.0
    await spool_keeper.tick(site)
    assert await site.alerts() == [("disk_space_warning", "warning")]
    site.free = 900.0
    await spool_keeper.tick(site)
    assert await site.alerts() == []
    cleared = await site.rows("SELECT code, acknowledged_by FROM alerts ORDER BY id")
    assert cleared == [
        ("disk_space_warning", "edge-agent"),
        ("disk_space_critical", "edge-agent"),
    ]
    assert await site.rows("SELECT level, free_mb FROM disk_pressure") == [("ok", 900)]


async def test_an_image_received_again_after_its_purge_takes_the_new_file(site):
    await site.receive("1")
    await site.settle("1", "delivered", T0)
    await keeper(site, Clock(T0 + timedelta(days=31))).tick(site)
    assert await site.purged() == ["1"]
    again = site.state_dir / "spool" / "again.dcm"
    again.write_bytes(b"DICM")
    await site.emit(stored("1", path=str(again), at=T0 + timedelta(days=32)))
    assert await site.purged() == []
    assert await site.rows("SELECT path FROM im_instances") == [("again.dcm",)]


async def test_a_purged_file_left_behind_by_a_stop_is_deleted_when_the_keeper_starts(site):
    files = await site.receive("1", "2", "3")
    await site.settle("1", "delivered", T0)
    await keeper(site, Clock(T0 + timedelta(days=31))).tick(site)
    await site.settle("2", "delivered", T0)
    await keeper(site, Clock(T0 + timedelta(days=32))).tick(site)
    for sop in ("1", "2"):  # the agent stopped after the commit, before the deletes
        files[sop].write_bytes(b"DICM")

    started = keeper(site, Clock(T0 + timedelta(days=33)))
    assert await started.remove_leftovers(site, site.state_dir / "spool") == 1

    # The latest purge's file is gone; image 1's, from an earlier (completed) purge, is not
    # looked at again; image 3 is not purged and keeps its file.
    assert [sop for sop, file in files.items() if file.exists()] == ["1", "3"]
    assert await site.purged() == ["1", "2"]


async def test_a_purged_file_left_behind_by_a_stop_is_an_audit_copy_not_missing(site):
    files = await site.receive("1", "2")
    await site.settle("1", "delivered", T0)
    await keeper(site, Clock(T0 + timedelta(days=31))).tick(site)
    files["1"].write_bytes(
        b"DICM"
    )  # the deletion did not happen: the agent stopped after the commit
    sops = {files[n]: f"{STUDY}.1.{n}" for n in files}
    found = audit_spool(site.state_dir, read_sop_uid=sops.get, min_age=0)
    assert found.missing == [] and found.unindexed == []
    assert found.copies == [str(files["1"])]
