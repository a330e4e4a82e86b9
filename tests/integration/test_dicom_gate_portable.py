"""The DICOM SCP's connection gate without SO_RCVLOWAT, as on Windows (which refuses the
option), checked on Linux through the same code path: a request that arrives in pieces is still
served, a half request still ends at ARTIM, and a modality's images are stored."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import drivers.dicom.gate
from drivers.dicom import wire
from tests.dicom_files import make_ct_slices
from tests.integration.test_dicom_hostile import closed_by_agent, gate_of
from tests.integration.test_dicom_scp import (
    RecordingContext,
    associate,
    make_scp,
    request,
    run_tool,
    serving,
)
from tests.peers import dcmtk


@pytest.fixture(autouse=True)
def without_low_water(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drivers.dicom.gate, "LOW_WATER", False)


@pytest.fixture(params=["lean", "pynetdicom"])
def fast_store(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "lean")


def send_in_pieces(port: int, data: bytes, pieces: int) -> int:
    """Send `data` in `pieces` writes a little apart, as a slow link delivers it; the PDU type
    of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            sock.sendall(data[start : start + size])
            time.sleep(0.05)  # the peer's pace: the gate sees each piece on its own
        header = sock.recv(6)
        return header[0] if header else -1


async def test_a_request_in_pieces_is_answered(tmp_path: Path, fast_store: bool):
    scp = make_scp(fast_store=fast_store)
    with capture_logs() as logs:
        async with serving(scp, RecordingContext(tmp_path)) as port:
            answer = await asyncio.to_thread(send_in_pieces, port, request(calling="CT1"), 5)
            assert answer == wire.A_ASSOCIATE_AC
            assert (await asyncio.to_thread(associate, port, "CT1")).is_released
            assert gate_of(scp).handed_over == 2
    assert [e for e in logs if e["event"] == "dicom.gate_failed"] == []


async def test_a_half_request_is_closed_after_artim(tmp_path: Path, fast_store: bool):
    scp = make_scp(fast_store=fast_store, artim_timeout=0.3)
    async with serving(scp, RecordingContext(tmp_path)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(request()[:40])
            assert await asyncio.to_thread(closed_by_agent, sock)
        assert gate_of(scp).refused["artim_timeout"] == 1
        assert (await asyncio.to_thread(associate, port, "CT1")).is_released


async def test_storescu_images_are_stored(tmp_path: Path, fast_store: bool):
    storescu = dcmtk("storescu")
    files = make_ct_slices(tmp_path / "in", 3, rows=32, columns=32)
    ctx = RecordingContext(tmp_path / "state")
    async with serving(make_scp(fast_store=fast_store), ctx) as port:
        target = ["-aet", "CT1", "-aec", "EDGE", "127.0.0.1", str(port)]
        code, out = await run_tool(storescu, *target, *map(str, files))
        assert code == 0, out
    assert len(ctx.kinds("dicom.stored")) == 3
