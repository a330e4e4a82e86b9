"""The reader driver against a real TCP peer: taps, debounce, reconnect, tcp-listen replacement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.events import Event
from drivers.rfid.chafon import inventory_answer
from drivers.rfid.rdm6300 import encode
from drivers.rfid.reader import RfidReader, RfidReaderConfig

FRAME_A = encode(bytes.fromhex("0100D507D0"))
FRAME_B = encode(bytes.fromhex("1A2B3C4D5E"))
FRAME_C = encode(bytes.fromhex("0000000007"))
EPC = bytes.fromhex("E2003412B802011712345678")
WAIT = 10.0  # a hang fails the test instead of blocking the suite


class RecordingContext:
    """A fake driver context at the byte boundary: emit records the event and commits at once."""

    state_dir = Path("/nonexistent")  # these sources write nothing there

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def emit(self, event: Event) -> bool:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        return True

    async def wait_for_events(self, count: int) -> list[Event]:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= count)
        return self.events

    def tags(self) -> list[str]:
        return [event.payload["tag"] for event in self.events]


@asynccontextmanager
async def running(reader: RfidReader, ctx: RecordingContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reader.run(ctx))
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def until(reader: RfidReader, predicate) -> None:
    async with asyncio.timeout(WAIT):
        await reader.link.wait_until(predicate)


def make_reader(url: str, **keys) -> RfidReader:
    config = {
        "type": "rfid_reader",
        "url": url,
        "protocol": "rdm6300",
        "reconnect_initial": 0.02,
        "reconnect_max": 0.1,
        **keys,
    }
    return RfidReader("station_1", RfidReaderConfig.model_validate(config))


class FakeReaderServer:
    """A TCP server playing a networked reader: sends frames to whoever is connected."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None
        self.clients: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        self.connected.set()

    async def wait_connected(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.connected.wait()

    async def send(self, data: bytes) -> None:
        for writer in self.clients:
            writer.write(data)
            await writer.drain()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.clients:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
        self.clients.clear()
        self.connected.clear()
        await self.server.wait_closed()


async def test_taps_debounce_and_reconnect_logged_once_each_way():
    peer = FakeReaderServer()
    await peer.start()
    reader = make_reader(f"tcp://127.0.0.1:{peer.port}", reader_id="R-07")
    ctx = RecordingContext()
    with capture_logs() as logs:
        async with running(reader, ctx):
            await until(reader, lambda: reader.online)
            await peer.wait_connected()
            # A card lying on the reader repeats its frame: one tap. Split + garbage on the way.
            await peer.send(b"\xff" + FRAME_A + FRAME_A[:6])
            await peer.send(FRAME_A[6:] + FRAME_B)
            events = await ctx.wait_for_events(2)
            assert ctx.tags() == ["0100D507D0", "1A2B3C4D5E"]
            assert events[0].kind == "rfid.read" and events[0].source == "station_1"
            assert events[0].payload == {
                "reader_id": "R-07",
                "tag": "0100D507D0",
                "raw": "0100D507D0",
                "protocol": "rdm6300",
                "bits": 40,
            }
            assert reader.errors == {"garbage": 1}
            assert reader.last_frame_at is not None

            await peer.stop()
            await until(reader, lambda: not reader.online and reader.link.failures >= 3)

            await peer.start()  # same port
            await until(reader, lambda: reader.online)
            await peer.wait_connected()
            await peer.send(FRAME_C)
            await ctx.wait_for_events(3)
            assert ctx.tags()[2] == "0000000007"
            await peer.stop()
            await until(reader, lambda: not reader.online)
    states = {"transport.online", "transport.offline"}
    transitions = [e["event"] for e in logs if e["event"] in states]
    assert transitions == [
        "transport.online",
        "transport.offline",
        "transport.online",
        "transport.offline",
    ]
    assert sum(e["event"] == "transport.retry" for e in logs) >= 2  # retries at debug only
    # Tags only at debug, and masked there too: a patient's wristband may be read here.
    masked = [e["tag_masked"] for e in logs if e["event"] == "rfid.tap"]
    assert masked == ["******07D0", "******4D5E", "******0007"]
    assert not any("D507D0" in str(e) for e in logs)
    assert not reader.online


async def test_unreachable_reader_never_raises_and_warns_once():
    peer = FakeReaderServer()
    await peer.start()
    await peer.stop()  # a port nobody listens on
    reader = make_reader(f"tcp://127.0.0.1:{peer.port}")
    with capture_logs() as logs:
        async with running(reader, RecordingContext()) as task:
            await until(reader, lambda: reader.link.failures >= 4)
            assert not task.done()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["transport.offline"]
    assert reader.link.last_error is not None and "cannot open" in reader.link.last_error
    # The devices page and /healthz say where it points and why it is offline.
    url = f"tcp://127.0.0.1:{peer.port}"
    assert reader.link_detail() == (
        f"{url}: cannot open: 127.0.0.1:{peer.port} refused the connection:"
        " nothing listens there (device off, wrong port?)"
    )


async def test_tcp_listen_newest_connection_replaces_the_old_one():
    reader = make_reader("tcp-listen://127.0.0.1:0", protocol="decimal")
    ctx = RecordingContext()
    with capture_logs() as logs:
        async with running(reader, ctx):
            await until(reader, lambda: reader.link.address is not None)
            assert reader.link.address is not None
            port = reader.link.address[1]
            old_in, old_out = await asyncio.open_connection("127.0.0.1", port)
            await until(reader, lambda: reader.online)
            old_out.write(b"0013961168\r\n")
            await ctx.wait_for_events(1)

            _new_in, new_out = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(WAIT):
                assert await old_in.read() == b""  # the old connection was closed by us
            new_out.write(b"213,00001\r\n")
            await ctx.wait_for_events(2)
            assert ctx.tags() == ["00D507D0", "D50001"]
            assert reader.online

            new_out.close()
            await new_out.wait_closed()
            await until(reader, lambda: not reader.online)
            old_out.close()
            await old_out.wait_closed()
    events = [e["event"] for e in logs]
    assert events.count("transport.online") == 1  # a replacement is not an outage
    assert events.count("transport.replaced") == 1
    assert events.count("transport.offline") == 1


class GatedContext(RecordingContext):
    """emit waits for the test to open the gate, like a journal commit that takes its time."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def emit(self, event: Event) -> bool:
        await super().emit(event)
        await self.gate.wait()
        return True


async def test_a_tap_is_handled_only_after_emit_returns():
    peer = FakeReaderServer()
    await peer.start()
    reader = make_reader(f"tcp://127.0.0.1:{peer.port}")
    ctx = GatedContext()
    async with running(reader, ctx):
        await until(reader, lambda: reader.online)
        await peer.wait_connected()
        await peer.send(FRAME_A + FRAME_B)
        await ctx.wait_for_events(1)
        assert reader.taps == 0  # emit has not returned: not handled, next frame waits
        assert len(ctx.events) == 1
        ctx.gate.set()
        await ctx.wait_for_events(2)
        await peer.stop()
        await until(reader, lambda: not reader.online)
    assert reader.taps == 2


async def test_chafon_answer_mode_reader_is_polled():
    received: list[bytes] = []
    answered = asyncio.Event()

    finished = asyncio.Event()

    async def chafon_reader(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while command := await r.read(64):
                received.append(command)
                w.write(inventory_answer([EPC]))
                await w.drain()
                answered.set()
        finally:
            w.close()
            finished.set()

    server = await asyncio.start_server(chafon_reader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = make_reader(
        f"tcp://127.0.0.1:{port}", protocol="chafon", poll_interval=0.01, address=0x00
    )
    ctx = RecordingContext()
    async with running(reader, ctx):
        await ctx.wait_for_events(1)
        async with asyncio.timeout(WAIT):
            await answered.wait()
    async with asyncio.timeout(WAIT):
        await finished.wait()  # the reader's side saw us hang up: no handler left running
    server.close()
    await server.wait_closed()
    assert received[0] == bytes.fromhex("04 00 01 DB 4B")
    assert ctx.tags() == [EPC.hex().upper()]  # polled again and again: still one tap
    assert ctx.events[0].payload["bits"] == 96


class FailingContext(RecordingContext):
    async def emit(self, event: Event) -> bool:
        raise OSError("journal disk failed")


async def test_a_failing_emit_crashes_the_driver_instead_of_dropping_the_tap():
    peer = FakeReaderServer()
    await peer.start()
    reader = make_reader(f"tcp://127.0.0.1:{peer.port}")
    task = asyncio.create_task(reader.run(FailingContext()))
    await until(reader, lambda: reader.online)
    await peer.wait_connected()
    await peer.send(FRAME_A)
    with pytest.raises(OSError, match="journal disk failed"):
        async with asyncio.timeout(WAIT):
            await task
    assert reader.taps == 0 and not reader.online
    await peer.stop()
