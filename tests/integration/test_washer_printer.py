"""The printer-line source on a real socat pseudo-terminal: cuts, idle gaps, a bad receipt."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.errors import JournalError
from agent.events import Event
from drivers.washer.assembler import Chunk
from drivers.washer.printer import WasherPrinter, WasherPrinterConfig
from tests.integration.test_reader_serial import pty_pair, socat, write_peer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "washer"
WAIT = 10.0


class StateContext:
    """A driver context at the byte boundary with a real state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def emit(self, event: Event) -> bool:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        return True

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> list[Event]:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))
        return self.events


@asynccontextmanager
async def running(driver: WasherPrinter, ctx: StateContext) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run(ctx))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def make_printer(url: str, **keys: object) -> WasherPrinter:
    config = {
        "type": "washer_printer",
        "url": url,
        "format": "thermal_cn",
        "idle_gap": 0.3,
        "max_bytes": 2048,
        "reconnect_initial": 0.02,
        "reconnect_max": 0.1,
        **keys,
    }
    return WasherPrinter("aer_1", WasherPrinterConfig.model_validate(config))


async def test_receipts_over_a_serial_printer_line(tmp_path: Path):
    socat()
    device, peer = tmp_path / "ttyPRINTER", tmp_path / "ttyWASHER"
    printer = make_printer(f"serial://{device}?baud=115200")
    ctx = StateContext(tmp_path / "state")
    good_1 = (FIXTURES / "printer_oer_aw.bin").read_bytes()
    bad = (FIXTURES / "printer_big5.bin").read_bytes()
    good_2 = (FIXTURES / "printer_laoken.bin").read_bytes()
    no_cut = (FIXTURES / "printer_xinhua_nocut.bin").read_bytes()
    with capture_logs() as logs:
        async with running(printer, ctx), pty_pair(device, peer):
            async with asyncio.timeout(WAIT):
                await printer.link.wait_until(lambda: printer.online)
            stream = good_1 + bad + good_2
            write_peer(peer, stream[:100])  # splits an ESC/POS command of the first receipt
            write_peer(peer, stream[100:])
            await ctx.wait_for(lambda events: len(events) >= 3)
            write_peer(peer, no_cut)  # no cut: ends after the idle gap
            await ctx.wait_for(lambda events: len(events) >= 4)
            oversize = b"\x1b@" + b"x" * 3000 + b"\x1dV\x00"
            write_peer(peer, oversize)
            await ctx.wait_for(
                lambda events: (
                    sum(e.payload["size"] for e in events[4:] if e.kind == "washer.rejected")
                    >= len(oversize)
                )
            )

    kinds = [e.kind for e in ctx.events[:4]]
    assert kinds == ["washer.cycle", "washer.rejected", "washer.cycle", "washer.cycle"]
    cycles = [e.payload for e in ctx.events if e.kind == "washer.cycle"]
    assert [c["cycle_number"] for c in cycles] == ["004512", "1187", "20240513-017"]
    assert [c["result"] for c in cycles] == ["pass", "fail", "pass"]
    first = ctx.events[0]
    assert first.source == "aer_1" and first.occurred_at.isoformat() == "2024-05-13T09:41:50+08:00"
    assert first.payload["receipt_sha256"] == hashlib.sha256(good_1).hexdigest()
    assert first.payload["format"] == "thermal_cn" and first.payload["washer"] == "AW-02"
    assert (
        "\x1b" not in first.payload["receipt_text"]
        and "结果: 合格" in first.payload["receipt_text"]
    )
    assert set(first.payload) == {
        "washer", "program", "cycle_number", "started_at", "ended_at", "operator", "scope",
        "phases", "leak_test", "channels", "error_code", "result", "format", "receipt_sha256",
        "receipt_text",
    }  # fmt: skip

    rejected = ctx.events[1].payload
    assert rejected["reason"].startswith("mis_encoded")
    assert rejected["size"] == len(bad) and rejected["format"] == "thermal_cn"
    assert rejected["receipt_sha256"] == hashlib.sha256(bad).hexdigest()
    quarantined = Path(rejected["quarantined"])
    assert quarantined.parent == tmp_path / "state" / "quarantine" / "washer" / "aer_1"
    assert quarantined.name.endswith(f"-{rejected['receipt_sha256'][:8]}.bin")
    assert quarantined.read_bytes() == bad

    oversize_events = [e.payload for e in ctx.events[4:]]
    assert oversize_events and all(p["reason"].startswith("oversize") for p in oversize_events)
    assert b"".join(Path(p["quarantined"]).read_bytes() for p in oversize_events) == oversize
    assert printer.counters == {"mis_encoded": 1, "oversize": len(oversize_events)}

    rejects = [e for e in logs if e["event"] == "washer.receipt_rejected"]
    assert (rejects[0]["source"], rejects[0]["reason"]) == ("aer_1", "mis_encoded")
    assert len(rejects) == 1 + len(oversize_events)
    assert not any(name in str(logs) for name in ("张丽", "王芳", "李明", "陳美玲"))


async def test_end_marker_and_reprint_over_tcp_listen(tmp_path: Path):
    printer = make_printer("tcp-listen://127.0.0.1:0", end_marker="签名", idle_gap=30)
    ctx = StateContext(tmp_path / "state")
    receipt = (FIXTURES / "thermal_oer_aw.txt").read_bytes()  # no cut; ends with 签名:____
    async with running(printer, ctx):
        async with asyncio.timeout(WAIT):
            await printer.link.wait_until(lambda: printer.link.address is not None)
        assert printer.link.address is not None
        _, writer = await asyncio.open_connection("127.0.0.1", printer.link.address[1])
        writer.write(receipt + receipt)  # the washer's 补打 (reprint) button
        await writer.drain()
        events = await ctx.wait_for(lambda events: len(events) >= 2)
        writer.close()
    assert [e.kind for e in events] == ["washer.cycle", "washer.cycle"]
    assert events[0].id == events[1].id  # the journal keeps one
    assert printer.counters == {}


async def test_a_truncated_and_a_garbage_receipt_on_the_line_are_quarantined(tmp_path: Path):
    socat()
    device, peer = tmp_path / "ttyPRINTER", tmp_path / "ttyWASHER"
    printer = make_printer(f"serial://{device}?baud=115200")
    ctx = StateContext(tmp_path / "state")
    good = (FIXTURES / "printer_oer_aw.bin").read_bytes()
    cut_short = good[: good.index("结果".encode("gb18030"))] + b"\x1dV\x00"  # paper ran out
    noise = b"\x1b@" + "设备自检 OK 12345 \n".encode("gb18030") * 5 + b"\x1dV\x00"
    async with running(printer, ctx), pty_pair(device, peer):
        async with asyncio.timeout(WAIT):
            await printer.link.wait_until(lambda: printer.online)
        write_peer(peer, cut_short + noise + good)
        await ctx.wait_for(lambda events: len(events) >= 3)
    kinds = [(e.kind, e.payload.get("reason", "").split(":")[0]) for e in ctx.events]
    assert kinds == [
        ("washer.rejected", "truncated"),
        ("washer.rejected", "garbage"),
        ("washer.cycle", ""),
    ]
    assert Path(ctx.events[0].payload["quarantined"]).read_bytes() == cut_short
    assert printer.counters == {"truncated": 1, "garbage": 1}


class BrokenJournalContext(StateContext):
    """The journal fails at the commit (a full disk, say)."""

    async def emit(self, event: Event) -> bool:
        raise JournalError("disk full at commit")


async def test_a_receipt_is_quarantined_when_the_journal_cannot_take_it(tmp_path: Path):
    printer = make_printer("tcp-listen://127.0.0.1:0")
    ctx = BrokenJournalContext(tmp_path / "state")
    receipt = (FIXTURES / "printer_oer_aw.bin").read_bytes()
    with pytest.raises(JournalError):
        await printer._handle(ctx, Chunk(receipt, oversize=False))
    (kept,) = (tmp_path / "state" / "quarantine" / "washer" / "aer_1").iterdir()
    assert kept.read_bytes() == receipt  # the printer cannot print it again: nothing lost


async def test_a_receipt_the_parser_cannot_date_is_quarantined_not_lost(tmp_path: Path):
    printer = make_printer("tcp-listen://127.0.0.1:0")
    ctx = StateContext(tmp_path / "state")
    far = "程序: P\n循环号: 1\n日期: 9999-12-31\n测漏 23:50 - 00:10\n结果: 合格\n"
    receipt = b"\x1b@" + far.encode("gb18030") + b"\x1dV\x00"
    await printer._handle(ctx, Chunk(receipt, oversize=False))
    (rejected,) = ctx.events
    assert rejected.kind == "washer.rejected"
    assert rejected.payload["reason"].startswith("bad_value: ")
    assert Path(rejected.payload["quarantined"]).read_bytes() == receipt
    assert printer.counters == {"bad_value": 1}
