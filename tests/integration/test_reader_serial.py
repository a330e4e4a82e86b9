"""The reader driver on a real serial pseudo-terminal pair made by socat, unplugged and back.

Every serial test runs twice: with the event loop reading the port (Linux) and with the worker
threads Windows uses (drivers/serial_thread.py), forced here on the same pseudo-terminals."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import drivers.transport
from drivers.serial_thread import ThreadedSerialTransport
from drivers.transport import READ_SIZE, SerialEndpoint, TcpEndpoint, open_stream, why_not_open
from tests.integration.test_reader_tcp import (
    FRAME_A,
    FRAME_B,
    WAIT,
    RecordingContext,
    make_reader,
    running,
    until,
)
from tests.peers import required_tool


@pytest.fixture(params=[False, True], ids=["event-loop", "threads"])
def serial_threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Which serial transport `open_stream` uses: the event loop's, or Windows' threads."""
    monkeypatch.setattr(drivers.transport, "SERIAL_THREADS", request.param)
    return bool(request.param)


def socat() -> str:
    """The socat binary; under CI a missing socat fails the test rather than skipping it."""
    return required_tool("socat", "socat")


@asynccontextmanager
async def pty_pair(device: Path, peer: Path) -> AsyncIterator[None]:
    """Run socat linking two raw ptys reachable as `device` and `peer` until the block ends."""
    process = await asyncio.create_subprocess_exec(
        socat(),
        "-d",
        "-d",
        f"pty,raw,echo=0,link={device}",
        f"pty,raw,echo=0,link={peer}",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(WAIT):
            while b"starting data transfer loop" not in await process.stderr.readline():
                pass
        yield
    finally:
        with suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def write_peer(peer: Path, data: bytes) -> None:
    fd = os.open(peer, os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def test_serial_reader_taps_and_survives_unplugging(tmp_path, serial_threads):
    socat()
    device, peer = tmp_path / "ttyREADER", tmp_path / "ttyTEST"
    reader = make_reader(f"serial://{device}?baud=9600&parity=N&bytesize=8&stopbits=1")
    ctx = RecordingContext()
    with capture_logs() as logs:
        async with running(reader, ctx):
            await until(reader, lambda: reader.link.failures >= 2)  # not plugged in yet
            async with pty_pair(device, peer):
                await until(reader, lambda: reader.online)
                write_peer(peer, b"\x00" + FRAME_A + FRAME_A + FRAME_A[:4])
                write_peer(peer, FRAME_A[4:])
                await ctx.wait_for_events(1)
            # socat gone: the device disappeared under the open port.
            await until(reader, lambda: not reader.online and reader.link.failures >= 2)
            async with pty_pair(device, peer):
                await until(reader, lambda: reader.online)
                write_peer(peer, FRAME_B)
                await ctx.wait_for_events(2)
            await until(reader, lambda: not reader.online)
    assert ctx.tags() == ["0100D507D0", "1A2B3C4D5E"]
    assert ctx.events[0].payload["protocol"] == "rdm6300"
    states = {"transport.online", "transport.offline"}
    transitions = [e["event"] for e in logs if e["event"] in states]
    assert reader.errors == {"garbage": 1}
    assert transitions == [
        "transport.offline",
        "transport.online",
        "transport.offline",
        "transport.online",
        "transport.offline",
    ]


async def test_a_device_that_cannot_be_opened_is_said_with_the_fix(tmp_path, serial_threads):
    missing = SerialEndpoint(str(tmp_path / "ttyUSB9"))
    with pytest.raises(OSError) as unplugged:
        await open_stream(missing)
    assert why_not_open(missing, unplugged.value) == (
        f"no device {missing.device}: is the reader plugged in? (ls /dev/serial/by-id/)"
    )
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = TcpEndpoint("127.0.0.1", port)
    with pytest.raises(OSError) as refused:
        await open_stream(server)
    assert why_not_open(server, refused.value).startswith(
        f"127.0.0.1:{port} refused the connection: nothing listens there"
    )


def read_peer(peer: Path, size: int) -> bytes:
    """Read `size` bytes from the far end (blocking: run it in a thread)."""
    fd = os.open(peer, os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    try:
        got = b""
        while len(got) < size:
            got += os.read(fd, size - len(got))
        return got
    finally:
        os.close(fd)


async def test_the_port_carries_both_ways_and_closes_under_a_waiting_read(tmp_path, serial_threads):
    socat()
    device, peer = tmp_path / "ttyREADER", tmp_path / "ttyTEST"
    command = b"\x02READ\x03\r\n\x1a"  # a reader command; no byte is translated
    bulk = bytes(range(256)) * 800  # 200 KiB: more than the pty holds, so writing must wait
    async with pty_pair(device, peer):
        reader, writer = await open_stream(SerialEndpoint(str(device), baudrate=115200))
        assert isinstance(writer.transport, ThreadedSerialTransport) == serial_threads
        async with asyncio.timeout(WAIT):
            received = asyncio.ensure_future(asyncio.to_thread(read_peer, peer, len(command)))
            writer.write(command)
            await writer.drain()
            assert await received == command
            received = asyncio.ensure_future(asyncio.to_thread(read_peer, peer, len(bulk)))
            writer.write(bulk)
            await writer.drain()
            assert await received == bulk
            write_peer(peer, b"tag\r\n")
            assert await reader.readexactly(5) == b"tag\r\n"
            waiting = asyncio.ensure_future(reader.read(READ_SIZE))  # the port is silent now
            writer.close()
            await writer.wait_closed()
            assert await waiting == b""  # the blocked read ended with the close
