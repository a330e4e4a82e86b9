"""Mutated PDUs and a half-open flood against a running SCP: it serves on, loses nothing stored."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from structlog.testing import capture_logs

from drivers.dicom import wire
from tests.dicom_files import make_ct_slices
from tests.helpers import eventually
from tests.integration.test_dicom_hostile import (
    ATTACKER,
    FLOOD,
    flood,
    gate_of,
    library_records,
)
from tests.integration.test_dicom_lean import command, p_data
from tests.integration.test_dicom_scp import (
    RecordingContext,
    dataset_bytes,
    make_scp,
    request,
    send_files,
    serving,
)

RELEASE = bytes([wire.A_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0])
EXTREMES = [0, 1, 2, 5, 6, 0x7F, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


def conversations(data_set: bytes) -> list[bytes]:
    """Valid byte streams to mutate: a request alone, a C-ECHO, a C-STORE, each released."""
    rq = request(calling="CT1")
    echo = command(wire.C_ECHO_RQ, 1, False, AffectedSOPClassUID=str(Verification))
    uids = {"AffectedSOPClassUID": str(CTImageStorage), "AffectedSOPInstanceUID": "1.2.3.99"}
    store = command(wire.C_STORE_RQ, 2, True, **uids)
    return [
        rq,
        rq + p_data(3, 0x03, echo) + RELEASE,
        rq + p_data(1, 0x03, store) + p_data(1, 0x02, data_set) + RELEASE,
    ]


@st.composite
def hostile_streams(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """A valid conversation mutated 1–4 times (bytes, lengths, cuts), or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        match draw(st.sampled_from(["flip", "insert", "delete", "cut", "length"])):
            case "flip":
                data[at : at + 1] = bytes([draw(st.integers(0, 255))])
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=40))
            case "delete":
                del data[at : at + draw(st.integers(1, 40))]
            case "cut":
                del data[at:]
            case "length":  # a PDU, PDV or element length: 4 bytes, big or little endian
                value = draw(st.sampled_from(EXTREMES))
                data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
    return bytes(data)


def converse(port: int, stream: bytes) -> None:
    """Send `stream`, close our side, read until the agent closes (the timeout guards a hang)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65_536):
                pass
    finally:
        sock.close()


def fingerprints(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


async def fuzz_the_scp(tmp_path: Path, fast_store: bool, examples: int) -> None:
    files = make_ct_slices(tmp_path / "in", 3, rows=32, columns=32)
    bases = conversations(dataset_bytes(files[0]))
    ctx = RecordingContext(tmp_path / "state")
    scp = make_scp(
        fast_store=fast_store,
        allowed_calling_aes=["CT1"],
        artim_timeout=5.0,
        acse_timeout=5.0,
        dimse_timeout=5.0,
        network_timeout=5.0,
    )
    threads_before = threading.active_count()
    with library_records() as records, capture_logs() as logs:
        async with serving(scp, ctx) as port:
            assert await asyncio.to_thread(send_files, port, files[:2], "CT1") == [0, 0]
            before = fingerprints([Path(p["path"]) for p in ctx.kinds("dicom.stored")])

            @settings(max_examples=examples)
            @given(hostile_streams(bases))
            def survives(stream: bytes) -> None:
                converse(port, stream)

            held = await asyncio.to_thread(flood, port, FLOOD, ATTACKER)  # half-open, meanwhile
            try:
                await asyncio.to_thread(survives)
                assert await asyncio.to_thread(send_files, port, files[2:], "CT1") == [0]
            finally:
                for sock in held:
                    sock.close()
            gate = gate_of(scp)

            async def settled() -> bool:  # every connection closed, every worker thread ended
                open_now = gate.open_connections
                return open_now == 0 and threading.active_count() - threads_before <= 5

            await eventually(settled, timeout=30)
    assert fingerprints(list(before)) == before  # nothing stored before was touched
    assert not [r for r in records if r.levelno >= logging.ERROR]
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    for entry in logs:
        assert all("\n" not in str(value) for value in entry.values())
    assert not list((ctx.state_dir / "spool" / "tmp").iterdir())


@pytest.mark.parametrize("fast_store", [True, False], ids=["lean", "pynetdicom"])
async def test_mutated_pdus_leave_the_scp_serving(tmp_path: Path, fast_store: bool):
    await fuzz_the_scp(tmp_path, fast_store, examples=80)


@pytest.mark.slow
@pytest.mark.parametrize("fast_store", [True, False], ids=["lean", "pynetdicom"])
async def test_mutated_pdus_leave_the_scp_serving_long(tmp_path: Path, fast_store: bool):
    await fuzz_the_scp(tmp_path, fast_store, examples=3000)
