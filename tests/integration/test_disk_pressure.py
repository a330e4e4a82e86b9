"""A small filesystem filled with images (issue 22, acceptance): the warning then the critical
alert fire, delivered images are purged early, undelivered ones never, RFID taps keep being
journaled when C-STORE is refused at its reserve, and intake resumes when space returns.

The journal and the spool share a 32 MiB tmpfs when the test runs as root (mount allowed); else
the filesystem is faked at the disk_usage (statvfs) boundary: 32 MiB less what the files under
it take."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pydicom import dcmread
from pynetdicom import dimse_messages

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.imaging.purger import SpoolKeeper
from agent.journal.writer import Journal
from bench.dicom_store import JournalContext
from tests.dicom_files import make_ct_slices
from tests.integration.test_dicom_scp import make_scp, send_files, serving
from tests.unit.test_imaging_index import exam, exam_doc

MIB = 1024 * 1024
SIZE_MB = 32
RESERVE_MB, CRITICAL_MB, WARNING_MB = 6, 12, 18
OUT_OF_RESOURCES = 0xA700


class Usage(NamedTuple):
    """What shutil.disk_usage answers."""

    total: int
    used: int
    free: int


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SIZE_MB filesystem: a real tmpfs if it can be mounted, else a statvfs fake."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = sys.platform == "linux" and os.geteuid() == 0 and _mount(disk)
    if not mounted:
        real = shutil.disk_usage

        def disk_usage(path: Any) -> Usage:
            if not Path(path).resolve().is_relative_to(disk.resolve()):
                return Usage(*real(path))
            used = sum(f.stat().st_size for f in disk.rglob("*") if f.is_file())
            return Usage(SIZE_MB * MIB, used, max(0, SIZE_MB * MIB - used))

        monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    try:
        yield disk
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _mount(disk: Path) -> bool:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


class Context(JournalContext):
    """What the runtime gives the SCP and the imaging domain's tasks."""

    async def query(self, fn: Any) -> Any:
        return await self.journal.run(fn)


@dataclass
class Site:
    journal: Journal
    ctx: Context
    keeper: SpoolKeeper
    port: int

    async def store(self, path: Path) -> int:
        (status,) = await asyncio.to_thread(send_files, self.port, [path])
        return status

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self.journal.run(lambda conn: conn.execute(sql, args).fetchall())

    async def forward(self, study: str, exam_no: str) -> None:
        """Join an exam and make the study stable: its images are queued for the uplink."""
        doc = exam_doc(exam_no, studyUID=study, accessionNo=exam_no)
        await self.journal.ingest([exam(doc, at=datetime.now(UTC))])
        ((last,),) = await self.rows(
            "SELECT last_received FROM im_studies WHERE study_uid = ?", study
        )
        stable = {"study_uid": study, "last_received": last}
        await self.journal.ingest([Event("imaging.study_stable", "imaging", stable)])

    async def deliver(self, study: str) -> int:
        """The uplink delivered the study's images (as the dispatcher settles them)."""
        sql = (
            "UPDATE outbox SET state = 'delivered', settled_at = ? WHERE kind = 'dicom.instance'"
            " AND json_extract(payload, '$.expect.StudyInstanceUID') = ?"
        )
        return await self.journal.run(lambda conn: conn.execute(sql, (time.time(), study)).rowcount)

    async def files_of(self, study: str) -> list[tuple[Path, bool]]:
        """(spool file, purged) of each of the study's images."""
        spool = self.ctx.state_dir / "spool"
        return [
            (spool / path, purged is not None)
            for path, purged in await self.rows(
                "SELECT path, purged_at FROM im_instances WHERE study_uid = ?", study
            )
        ]

    async def alert_log(self) -> list[tuple[str, bool]]:
        """(code, still open) of every disk alert, in the order raised."""
        return [
            (code, acknowledged is None)
            for code, acknowledged in await self.rows(
                "SELECT code, acknowledged_at FROM alerts WHERE code LIKE 'disk_space_%'"
                " ORDER BY id"
            )
        ]


def study_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


async def test_a_small_disk_filled_with_images(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SCP points pynetdicom's receive (process-wide) at its spool, which is unmounted after
    # the test: give the next pynetdicom receiver in this process the factory it had before.
    factory = getattr(dimse_messages, "NamedTemporaryFile")  # noqa: B009
    monkeypatch.setattr(dimse_messages, "NamedTemporaryFile", factory)
    state = small_disk / "state"
    state.mkdir()
    imaging = ImagingConfig.model_validate(
        {
            "type": "imaging",
            "forward_to": ["city"],
            "keep_days": 30,
            "disk_warning_free_mb": WARNING_MB,
            "disk_critical_free_mb": CRITICAL_MB,
        }
    )
    journal = await Journal.open(state / "journal.db", (ImagingHandler("imaging", imaging),))
    ctx = Context(state, journal)
    delivered = make_ct_slices(tmp_path / "a", 12, prefix="a")  # 512 KiB each
    waiting = make_ct_slices(tmp_path / "b", 60, prefix="b")
    study_a, study_b = study_uid(delivered[0]), study_uid(waiting[0])
    try:
        async with serving(make_scp(min_free_mb=RESERVE_MB), ctx) as port:
            site = Site(journal, ctx, SpoolKeeper("imaging", imaging), port)
            for path in delivered:
                assert await site.store(path) == 0
            await site.forward(study_a, "EA")
            assert await site.deliver(study_a) == 12  # delivered now: kept 30 days normally
            await site.keeper.tick(ctx)
            assert site.keeper.level == "ok"

            levels, statuses = ["ok"], []
            for path in waiting:
                statuses.append(await site.store(path))
                await site.keeper.tick(ctx)
                if site.keeper.level != levels[-1]:
                    levels.append(str(site.keeper.level))
                if statuses[-1] == OUT_OF_RESOURCES:
                    break
            # Warning first, then critical; the early purge of study A brought some space back.
            assert levels[:3] == ["ok", "warning", "critical"], levels
            assert statuses[-1] == OUT_OF_RESOURCES and set(statuses[:-1]) == {0}
            alerts = await site.alert_log()
            assert [code for code, _ in alerts][:2] == ["disk_space_warning", "disk_space_critical"]
            assert all(
                purged and not file.exists() for file, purged in await site.files_of(study_a)
            )
            kept_b = await site.files_of(study_b)
            assert len(kept_b) == len(statuses) - 1
            assert all(file.exists() and not purged for file, purged in kept_b)

            # At the reserve: images are refused, taps are not (the space below is theirs).
            taps = [
                Event("rfid.read", "reader_1", {"tag": f"E200{n:08d}", "antenna": 1})
                for n in range(20)
            ]
            assert await journal.ingest(taps) == [True] * 20
            assert await site.rows("SELECT COUNT(*) FROM events WHERE kind = 'rfid.read'") == [
                (20,)
            ]

            # Queued but not delivered: still never purged, even at critical.
            await site.forward(study_b, "EB")
            await site.keeper.tick(ctx)
            assert all(file.exists() for file, _ in await site.files_of(study_b))
            assert await site.store(waiting[len(statuses)]) == OUT_OF_RESOURCES

            # Delivered: purged at once (critical ignores keep_days), and intake resumes.
            await site.deliver(study_b)
            assert await site.keeper.tick(ctx) == len(kept_b)
            assert await site.store(waiting[len(statuses)]) == 0
            await site.keeper.tick(ctx)
            assert site.keeper.level == "ok"
            assert all(not still_open for _, still_open in await site.alert_log())
    finally:
        await ctx.close()
        await journal.close()
