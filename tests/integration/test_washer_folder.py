"""The folder source on a real folder watched by watchdog: complete, partial, rejected, existing."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from drivers.washer import folder as folder_module
from drivers.washer.folder import WasherFolder, WasherFolderConfig
from tests.integration.test_washer_printer import WAIT, StateContext

FIXTURES = Path(__file__).parents[1] / "fixtures" / "washer"


def make_folder(path: Path, **keys: object) -> WasherFolder:
    config = {"type": "washer_folder", "path": str(path), "format": "csv", "settle": 0.2, **keys}
    return WasherFolder("aer_folder", WasherFolderConfig.model_validate(config))


@asynccontextmanager
async def running(driver: WasherFolder, ctx: StateContext) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run(ctx))
    try:
        async with asyncio.timeout(WAIT):
            await driver.wait_until(lambda: driver.watching)
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def until(driver: WasherFolder, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        await driver.wait_until(predicate)


async def test_existing_complete_partial_and_rejected_files(tmp_path: Path):
    inbox = tmp_path / "exports"
    inbox.mkdir()
    csv = (FIXTURES / "cycle_aw03.csv").read_bytes()
    (inbox / "existing.csv").write_bytes(csv)
    (inbox / "~lock.csv").write_bytes(b"x")  # temp files are never read
    folder = make_folder(inbox)
    ctx = StateContext(tmp_path / "state")
    with capture_logs() as logs:
        async with running(folder, ctx):
            events = await ctx.wait_for(lambda events: len(events) >= 1)
            await until(folder, (inbox / "processed" / "existing.csv").exists)
            assert events[0].kind == "washer.cycle"
            assert events[0].payload["cycle_number"] == "004513"
            assert not (inbox / "existing.csv").exists()

            # Written in two parts: the first part alone is never read.
            partial = inbox / "cycle-0002.csv"
            second = csv.replace(b"004513", b"004514")
            cut = csv.index("阶段".encode("gb18030"))
            partial.write_bytes(second[:cut])
            await until(folder, lambda: folder.checks.get(partial.name, 0) >= 1)
            with partial.open("ab") as file:
                file.write(second[cut:])
            await ctx.wait_for(lambda events: len(events) >= 2)
            assert ctx.events[1].kind == "washer.cycle"
            assert ctx.events[1].payload["cycle_number"] == "004514"
            assert folder.checks[partial.name] >= 3  # seen changing, then stable

            (inbox / "bad.csv.tmp").write_bytes(csv[:cut])
            (inbox / "bad.csv.tmp").rename(inbox / "bad.csv")  # the rename completes it
            rejected = (await ctx.wait_for(lambda events: len(events) >= 3))[2]
            await until(folder, (inbox / "processed" / partial.name).exists)
    assert rejected.kind == "washer.rejected"
    assert rejected.payload["reason"] == "truncated: no phase table (阶段,…)"
    moved = Path(rejected.payload["quarantined"])
    assert moved == inbox / "rejected" / "bad.csv"
    assert moved.read_bytes() == csv[:cut]
    reason = (inbox / "rejected" / "bad.csv.reason.txt").read_text("utf-8")
    assert reason.startswith("truncated: no phase table")
    assert rejected.payload["size"] == cut
    assert folder.counters == {"truncated": 1}
    assert (inbox / "~lock.csv").exists() and "~lock.csv" not in folder.checks
    assert len(ctx.events) == 3
    assert [e["reason"] for e in logs if e["event"] == "washer.receipt_rejected"] == ["truncated"]
    assert "刘洋" not in str(logs)


async def test_ready_marker_and_a_file_name_used_twice(tmp_path: Path):
    inbox = tmp_path / "exports"
    inbox.mkdir()
    folder = make_folder(inbox, format="xml", ready_suffix=".ok", settle=30)
    ctx = StateContext(tmp_path / "state")
    xml = (FIXTURES / "cycle_aw04.xml").read_bytes()
    async with running(folder, ctx):
        for count, cycle in enumerate((b"004514", b"004515"), start=1):
            (inbox / "last.xml").write_bytes(xml.replace(b"004514", cycle))
            (inbox / "last.xml.ok").write_bytes(b"")
            await ctx.wait_for(lambda events, n=count: len(events) >= n)  # type: ignore[misc]
            # Both moved (file, then marker) before the writer reuses the names.
            await until(folder, lambda: not any(inbox.glob("last.xml*")))
    assert [e.payload["cycle_number"] for e in ctx.events] == ["004514", "004515"]
    processed = sorted(p.name for p in (inbox / "processed").iterdir())
    assert len(processed) == 4 and "last.xml" in processed and "last.xml.ok" in processed
    assert not (inbox / "last.xml.ok").exists()


async def test_a_missing_folder_is_waited_for(tmp_path: Path):
    inbox = tmp_path / "not-mounted-yet"
    folder = make_folder(inbox, retry_initial=0.02, retry_max=0.05)
    ctx = StateContext(tmp_path / "state")
    task = asyncio.create_task(folder.run(ctx))
    try:
        with capture_logs() as logs:
            await until(folder, lambda: folder.failures >= 2)
        warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
        assert warnings == ["washer.folder_unavailable"]  # once, then retries at debug
        inbox.mkdir()
        (inbox / "c.csv").write_bytes((FIXTURES / "cycle_aw03.csv").read_bytes())
        await ctx.wait_for(lambda events: len(events) >= 1)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    assert ctx.events[0].kind == "washer.cycle"


async def test_garbage_mis_encoded_and_truncated_files_are_rejected_with_their_reason(
    tmp_path: Path,
):
    inbox = tmp_path / "exports"
    inbox.mkdir()
    good = (FIXTURES / "thermal_oer_aw.txt").read_bytes()
    bad = {
        "noise.txt": ((FIXTURES / "garbage.bin").read_bytes(), "mis_encoded"),  # not text
        "prose.txt": ("会议纪要：下周一例会。\n".encode("gb18030") * 8, "garbage"),  # not a receipt
        "utf8.txt": ((FIXTURES / "thermal_oer_aw.utf8.txt").read_bytes(), "mis_encoded"),
        "cut.txt": (good[: good.index("结果".encode("gb18030"))], "truncated"),
    }
    for name, (data, _) in bad.items():
        (inbox / name).write_bytes(data)
    (inbox / "fine.txt").write_bytes(good)
    folder = make_folder(inbox, format="thermal_cn")
    ctx = StateContext(tmp_path / "state")
    async with running(folder, ctx):
        await ctx.wait_for(lambda events: len(events) >= len(bad) + 1)
        await until(folder, lambda: not any(inbox.glob("*.txt")))
    reasons = {
        Path(e.payload["quarantined"]).name: e.payload["reason"].split(":")[0]
        for e in ctx.events
        if e.kind == "washer.rejected"
    }
    assert reasons == {name: reason for name, (_, reason) in bad.items()}
    assert [e.kind for e in ctx.events].count("washer.cycle") == 1  # the good one is not lost
    for name, (data, _) in bad.items():
        assert (inbox / "rejected" / name).read_bytes() == data  # kept as it came


async def test_a_folder_without_change_notifications_is_still_read(tmp_path: Path, monkeypatch):
    """A network share (SMB, NFS) sends no notifications: the periodic listing finds the file."""

    async def silent_observer(*args: object, **kwargs: object) -> tuple[BaseObserver, int]:
        observer = Observer()  # watches nothing, like inotify on a CIFS mount
        observer.start()
        return observer, 0

    monkeypatch.setattr(folder_module, "start_observer", silent_observer)
    inbox = tmp_path / "share"
    inbox.mkdir()
    folder = make_folder(inbox, rescan_interval=0.1)
    ctx = StateContext(tmp_path / "state")
    async with running(folder, ctx):
        (inbox / "late.csv").write_bytes((FIXTURES / "cycle_aw03.csv").read_bytes())
        await ctx.wait_for(lambda events: len(events) >= 1)
    assert ctx.events[0].kind == "washer.cycle"


async def test_a_receipt_the_parser_cannot_date_is_rejected_and_the_source_keeps_reading(
    tmp_path: Path,
):
    inbox = tmp_path / "exports"
    inbox.mkdir()
    far = (
        "程序,P\n循环号,1\n结果,合格\n\n阶段,开始时间,结束时间,温度\n"
        "测漏,9999-12-31 23:59:00,00:01:00,\n"
    )
    (inbox / "a-far.csv").write_bytes(far.encode("gb18030"))
    good = (FIXTURES / "cycle_aw03.csv").read_bytes()
    (inbox / "b-good.csv").write_bytes(good)
    folder = make_folder(inbox)
    ctx = StateContext(tmp_path / "state")
    async with running(folder, ctx):
        await ctx.wait_for(lambda events: len(events) >= 2)
        await until(folder, lambda: not any(inbox.glob("*.csv")))
    rejected = next(e.payload for e in ctx.events if e.kind == "washer.rejected")
    assert rejected["reason"].startswith("bad_value: ")
    assert (inbox / "rejected" / "a-far.csv").read_bytes() == far.encode("gb18030")
    reason = (inbox / "rejected" / "a-far.csv.reason.txt").read_text()
    assert "year 9999 is outside 2000-2099" in reason
    assert [e.kind for e in ctx.events].count("washer.cycle") == 1


async def test_a_parser_defect_quarantines_the_receipt_instead_of_stopping_the_source(
    tmp_path: Path,
):
    inbox = tmp_path / "exports"
    inbox.mkdir()
    (inbox / "x.csv").write_bytes((FIXTURES / "cycle_aw03.csv").read_bytes())
    folder = make_folder(inbox)

    def broken(text: str, tz: object) -> object:
        raise IndexError("a bug quoting 刘洋's receipt")

    folder.receipts.parse = broken  # type: ignore[assignment]
    ctx = StateContext(tmp_path / "state")
    with capture_logs() as logs:
        async with running(folder, ctx):
            events = await ctx.wait_for(lambda events: len(events) >= 1)
            await until(folder, (inbox / "rejected" / "x.csv").exists)
    assert events[0].kind == "washer.rejected"
    assert events[0].payload["reason"] == "parser_failed: the csv parser failed (IndexError)"
    assert "刘洋" not in str(logs)


async def test_a_file_its_writer_still_holds_is_moved_once_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Windows refuses to rename a file another program holds open without sharing (a sharing
    # violation, PermissionError); simulated here, since Linux always allows it.
    held = {"cycle.csv"}
    rename = os.rename

    def refusing(source: str | Path, target: str | Path) -> None:
        if Path(source).name in held:
            raise PermissionError(errno.EACCES, "being used by another process", str(source))
        rename(source, target)

    monkeypatch.setattr(os, "rename", refusing)
    inbox = tmp_path / "exports"
    inbox.mkdir()
    (inbox / "cycle.csv").write_bytes((FIXTURES / "cycle_aw03.csv").read_bytes())
    folder = make_folder(inbox)
    ctx = StateContext(tmp_path / "state")
    with capture_logs() as logs:
        async with running(folder, ctx):
            await ctx.wait_for(lambda events: len(events) >= 2)  # read, refused, read again
            assert (inbox / "cycle.csv").exists()
            assert not (inbox / "processed").exists() or not any((inbox / "processed").iterdir())
            held.clear()  # the washer's program lets go
            await until(folder, (inbox / "processed" / "cycle.csv").exists)
    assert not (inbox / "cycle.csv").exists()
    assert len({event.id for event in ctx.events}) == 1  # one receipt, one event id
    in_use = [e for e in logs if e["event"] == "washer.file_in_use"]
    levels = [e["log_level"] for e in in_use]
    assert levels == ["warning"] + ["debug"] * (len(levels) - 1)  # said once per file
    assert {e["file"] for e in in_use} == {"cycle.csv"}
