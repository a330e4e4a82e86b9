"""The DICOM SCP against hostile and broken peers: floods, silence, garbage, a filling disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import dul
from structlog.testing import capture_logs

from drivers.dicom import reservoir, wire
from drivers.dicom.gate import ConnectionGate
from drivers.dicom.scp import DicomScp
from tests.agent_process import AgentProcess
from tests.dicom_files import make_ct_slices
from tests.helpers import eventually
from tests.integration.test_dicom_scp import (
    RecordingContext,
    associate,
    make_scp,
    request,
    run_tool,
    send_files,
    serving,
)
from tests.peers import dcmtk

FLOOD = 300
ATTACKER = "127.0.0.2"  # all of 127/8 is loopback on Linux: a second source address


@pytest.fixture(params=["lean", "pynetdicom"])
def fast_store(request: pytest.FixtureRequest) -> bool:
    """Both acceptors sit behind the gate: every test runs with each."""
    return bool(request.param == "lean")


def connect_from(address: str, port: int) -> socket.socket:
    """A connection to the SCP from `address` (a loopback alias)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    return sock


def flood(port: int, count: int, source: str) -> list[socket.socket]:
    """`count` half-open connections: every other one silent, the rest half an A-ASSOCIATE-RQ."""
    half = request()[: len(request()) // 2]
    sockets = []
    for number in range(count):
        sock = connect_from(source, port)
        sockets.append(sock)
        if number % 2:
            with contextlib.suppress(OSError):  # refused at accept: already closed
                sock.sendall(half)
    return sockets


def closed_by_agent(sock: socket.socket) -> bool:
    """Block until the agent closes `sock` (True), reading whatever it sent before."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


@contextlib.contextmanager
def library_records() -> Iterator[list[logging.LogRecord]]:
    """Every record the root logger's handlers would get (what reaches the agent's log)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(handler)


def gate_of(scp: DicomScp) -> ConnectionGate:
    assert scp.gate is not None
    return scp.gate


async def test_a_flood_of_half_open_connections_leaves_room_for_the_modality(
    tmp_path: Path, fast_store: bool
):
    echoscu, storescu = dcmtk("echoscu"), dcmtk("storescu")
    files = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    ctx = RecordingContext(tmp_path / "state")
    scp = make_scp(fast_store=fast_store, allowed_calling_aes=["CT1"], artim_timeout=120.0)
    threads_before = threading.active_count()
    with capture_logs() as logs:
        async with serving(scp, ctx) as port:
            gate = gate_of(scp)
            held = await asyncio.to_thread(flood, port, FLOOD, ATTACKER)
            try:

                async def sorted_out() -> bool:
                    return gate.waiting + gate.refused["too_many_from_address"] == FLOOD

                await eventually(sorted_out)
                assert gate.waiting == 11  # max_associations + 1
                # No thread per connection: the flood waits in the gate's selector.
                # (the gate's own, and the loop's executor threads that ran this test's calls)
                assert threading.active_count() - threads_before <= 5
                target = ["-aet", "CT1", "-aec", "EDGE", "127.0.0.1", str(port)]
                code, out = await run_tool(echoscu, *target)
                assert code == 0, out
                code, out = await run_tool(storescu, *target, *map(str, files))
                assert code == 0, out
            finally:
                for sock in held:
                    sock.close()
    assert len(ctx.kinds("dicom.stored")) == 2
    refusals = [e for e in logs if e["event"] == "dicom.connection_refused"]
    assert [(e["peer"], e["reason"]) for e in refusals] == [(ATTACKER, "too_many_from_address")]
    assert scp.stats()["connection_too_many_from_address"] == FLOOD - 11


def request_flood(port: int, count: int, source: str) -> int:
    """`count` connections each sending a whole request; the peak thread count while they do."""
    peak = threading.active_count()
    sockets = []
    try:
        for _ in range(count):
            sock = connect_from(source, port)
            sockets.append(sock)
            with contextlib.suppress(OSError):
                sock.sendall(request(calling="INTRUDER"))
            peak = max(peak, threading.active_count())
        for sock in sockets:
            closed_by_agent(sock)
            peak = max(peak, threading.active_count())
    finally:
        for sock in sockets:
            sock.close()
    return peak


async def test_a_flood_of_rejected_requests_keeps_threads_bounded(tmp_path: Path, fast_store: bool):
    scp = make_scp(fast_store=fast_store, allowed_calling_aes=["CT1"])
    threads_before = threading.active_count()
    async with serving(scp, RecordingContext(tmp_path)) as port:
        peak = await asyncio.to_thread(request_flood, port, FLOOD, ATTACKER)
        gate = gate_of(scp)

        async def settled() -> bool:  # every connection closed, every association's threads ended
            return gate.open_connections == 0 and threading.active_count() - threads_before <= 5

        await eventually(settled)
        assert (await asyncio.to_thread(associate, port, "CT1")).is_released
    # Per connection at most a worker, pynetdicom's association and DUL threads; at most
    # max_connections (20) connections at once; plus the gate and the test's executor.
    assert peak - threads_before <= 3 * 20 + 5
    assert gate.handed_over + gate.refused["too_many_from_address"] == FLOOD + 1  # + CT1


async def test_more_connections_than_the_total_are_refused(tmp_path: Path, fast_store: bool):
    scp = make_scp(fast_store=fast_store, max_connections=4, max_connections_per_address=100)
    with capture_logs() as logs:
        async with serving(scp, RecordingContext(tmp_path)) as port:
            gate = gate_of(scp)
            held = await asyncio.to_thread(flood, port, 10, ATTACKER)
            try:

                async def sorted_out() -> bool:
                    return gate.waiting + gate.refused["too_many_connections"] == 10

                await eventually(sorted_out)
                assert gate.waiting == 4
            finally:
                for sock in held:
                    sock.close()

            async def freed() -> bool:
                return gate.open_connections == 0

            await eventually(freed)
            assert (await asyncio.to_thread(associate, port, "CT1")).is_released
    refusals = [e["reason"] for e in logs if e["event"] == "dicom.connection_refused"]
    assert refusals == ["too_many_connections"]
    assert [e["refused"] for e in logs if e["event"] == "dicom.connections_accepted_again"] == [6]


async def test_silent_and_half_request_peers_are_closed_after_artim(
    tmp_path: Path, fast_store: bool
):
    scp = make_scp(fast_store=fast_store, artim_timeout=0.2)
    with capture_logs() as logs:
        async with serving(scp, RecordingContext(tmp_path)) as port:
            held = await asyncio.to_thread(flood, port, 6, "127.0.0.1")
            try:
                for sock in held:
                    assert await asyncio.to_thread(closed_by_agent, sock)
            finally:
                for sock in held:
                    sock.close()
            assert gate_of(scp).refused["artim_timeout"] == 6
            assert (await asyncio.to_thread(associate, port, "CT1")).is_released
    lines = [e for e in logs if e["event"] == "dicom.connection_refused"]
    assert [(e["peer"], e["reason"]) for e in lines] == [("127.0.0.1", "artim_timeout")]


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`; what the agent answers up to its A-ASSOCIATE-RJ or A-ABORT, or its close."""
    sock = connect_from("127.0.0.1", port)
    answer = b""
    try:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
            while chunk := sock.recv(4096):
                answer += chunk
                if _ends_with_refusal(answer):
                    break
    finally:
        sock.close()
    return answer


def _ends_with_refusal(stream: bytes) -> bool:
    while len(stream) >= 6:
        kind, length = wire.pdu_header(stream[:6])
        if len(stream) < 6 + length:
            return False
        if kind in (wire.A_ASSOCIATE_RJ, wire.A_ABORT):
            return True
        stream = stream[6 + length :]
    return False


def with_calling(rq: bytes, title: str) -> bytes:
    """`rq` with a calling AE title no well-behaved encoder would write."""
    return rq[:26] + title.encode("latin-1").ljust(16)[:16] + rq[42:]


def with_version(rq: bytes, version: int) -> bytes:
    return rq[:6] + version.to_bytes(2, "big") + rq[8:]


async def test_garbage_gets_an_abort_and_one_escaped_line_and_no_error_records(
    tmp_path: Path, fast_store: bool
):
    scp = make_scp(fast_store=fast_store, allowed_calling_aes=["CT1"])
    evil = "EVIL\n{x}\x1b[\xff"
    with capture_logs() as logs, library_records() as records:
        async with serving(scp, RecordingContext(tmp_path)) as port:
            for _ in range(3):
                answer = await asyncio.to_thread(exchange, port, b"GET / HTTP/1.1\r\n\r\n" * 5)
                assert answer == wire.abort(wire.ABORT_UNEXPECTED_PDU)
            answer = await asyncio.to_thread(exchange, port, with_version(request(), 2))
            assert answer[:1] == bytes([wire.A_ASSOCIATE_RJ])
            answer = await asyncio.to_thread(exchange, port, with_calling(request(), evil))
            assert answer == bytes([wire.A_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, 1, 1, 3])
            answer = await asyncio.to_thread(exchange, port, request(calling="INTRUDER"))
            assert answer[:1] == bytes([wire.A_ASSOCIATE_RJ])
            # A whole request whose items are garbage: past the gate, pynetdicom can't decode it.
            rq = request()
            broken = rq[:74] + bytes(range(256))[: len(rq) - 74]
            await asyncio.to_thread(exchange, port, broken)
            # An accepted association, then a P-DATA-TF that is not one.
            ok = request(calling="CT1")
            await asyncio.to_thread(exchange, port, ok + bytes([4, 0, 0, 0, 0, 3, 9, 9, 9]))
            assert (await asyncio.to_thread(associate, port, "CT1")).is_released
    assert not [r for r in records if r.levelno >= logging.ERROR]
    refused = [(e["reason"], e.get("calling_ae")) for e in logs if e["event"].endswith("refused")]
    assert refused == [
        ("not_an_association_request", None),
        ("protocol_version", "RAW"),
        ("calling_ae_invalid", "EVIL\\n{x}\\x1b[\\xff"),
        ("malformed_request", "RAW"),
    ]
    rejected = [e for e in logs if e["event"] == "dicom.association_rejected"]
    assert [e["calling_ae"] for e in rejected] == ["INTRUDER"]
    for entry in logs:
        assert all("\n" not in str(value) for value in entry.values())


async def test_the_reserve_is_checked_while_a_dataset_streams_in(
    tmp_path: Path, fast_store: bool, monkeypatch: pytest.MonkeyPatch
):
    small = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    big = make_ct_slices(tmp_path / "big", 1, rows=1024, columns=1024)  # 2 MiB of pixels
    ctx = RecordingContext(tmp_path / "state")
    reserve = 100
    spool_tmp = ctx.state_dir / "spool" / "tmp"
    probes: list[float] = []

    def free_mb(self: object) -> float:
        """1 MiB above the reserve, minus what is being received: the reserve is hit mid-stream."""
        # pynetdicom receives into spool/tmp, the lean path into reserved files in place.
        receiving_files = [*spool_tmp.iterdir(), *(Path(p) for p in list(reservoir.LIVE))]
        receiving = sum(_size(p) for p in receiving_files) / (1024 * 1024)
        probes.append(receiving)
        return reserve + 1.0 - receiving

    monkeypatch.setattr("drivers.dicom.store.Spool.free_mb", free_mb)
    async with serving(make_scp(fast_store=fast_store, min_free_mb=reserve), ctx) as port:
        assert await asyncio.to_thread(send_files, port, small) == [0x0000, 0x0000]
        assert await asyncio.to_thread(send_files, port, big) == [0xA700]
        assert await asyncio.to_thread(send_files, port, small[:1]) == [0x0000]
    assert not list(spool_tmp.iterdir())  # the partial file is gone
    assert all(p.stat().st_size < 1024 * 1024 for p in ctx.state_dir.glob("spool/*/*/*/*.dcm"))
    assert max(probes) < 2.0  # stopped at the reserve, not after the whole 2 MiB
    stored = ctx.kinds("dicom.stored")
    assert len(stored) == 3
    for payload in stored:
        assert dcmread(payload["path"]).SOPInstanceUID == payload["sop_instance_uid"]
    assert [r["reason"] for r in ctx.kinds("dicom.rejected")] == ["disk_low"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def push_huge_pdu(port: int, calling: str) -> int:
    """A request, then a P-DATA-TF declaring 1 GiB; MiB sent before the agent closed."""
    sock = connect_from("127.0.0.1", port)
    chunk = bytes(1024 * 1024)
    sent = 0
    try:
        sock.sendall(request(calling=calling) + bytes([wire.P_DATA_TF, 0]) + (1 << 30).to_bytes(4))
        while sent < 256:
            sock.sendall(chunk)
            sent += 1
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    return sent


async def test_a_huge_pdu_is_not_buffered(tmp_path: Path, fast_store: bool):
    scp = make_scp(fast_store=fast_store, allowed_calling_aes=["CT1"], acse_timeout=5.0)
    async with serving(scp, RecordingContext(tmp_path)) as port:
        # pynetdicom reads whole PDUs into memory, even after rejecting the association.
        assert await asyncio.to_thread(push_huge_pdu, port, "INTRUDER") < 256
        if not fast_store:  # (the lean path streams P-DATA: it reads and drops the garbage)
            assert await asyncio.to_thread(push_huge_pdu, port, "CT1") < 256
        assert (await asyncio.to_thread(associate, port, "CT1")).is_released


async def test_a_failing_pynetdicom_reactor_still_releases_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    original = dul.DULServiceProvider._is_transport_event
    calls: list[int] = []

    def failing_once(self: dul.DULServiceProvider) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in pynetdicom's reactor")
        return bool(original(self))

    monkeypatch.setattr(dul.DULServiceProvider, "_is_transport_event", failing_once)
    scp = make_scp(fast_store=False, allowed_calling_aes=["CT1"], max_connections_per_address=1)
    async with serving(scp, RecordingContext(tmp_path)) as port:
        sock = connect_from("127.0.0.1", port)
        try:
            sock.sendall(request(calling="CT1"))
            assert await asyncio.to_thread(closed_by_agent, sock)  # pynetdicom's abort, then EOF
        finally:
            sock.close()
        gate = gate_of(scp)

        async def released() -> bool:
            return gate.open_connections == 0

        await eventually(released)
        # With one connection allowed per address, a leaked one would refuse this.
        assert (await asyncio.to_thread(associate, port, "CT1")).is_released


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_whole_agent_under_attack_keeps_serving_and_its_log_clean(tmp_path: Path):
    echoscu, storescu = dcmtk("echoscu"), dcmtk("storescu")
    files = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "state"
[log]
level = "debug"
format = "json"
[sources.pacs]
type = "dicom_scp"
ae_title = "EDGE"
host = "127.0.0.1"
port = {port}
allowed_calling_aes = ["CT1"]
min_free_mb = 0
query_retrieve = false
""",
        encoding="utf-8",
    )
    agent = AgentProcess(config, tmp_path)
    await agent.start()

    async def listening() -> bool:  # READY=1 comes before the sources have bound their ports
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return False
        writer.close()  # closed before a request: the gate does not log it
        await writer.wait_closed()
        return True

    try:
        await eventually(listening)
        held = await asyncio.to_thread(flood, port, FLOOD, ATTACKER)
        try:
            for garbage in (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS hello
                with_calling(request(), "EVIL\nAE\x1b[31m"),
                request(calling="INTRUDER"),
                with_version(request(), 2),
            ):
                assert await asyncio.to_thread(exchange, port, garbage)
            target = ["-aet", "CT1", "-aec", "EDGE", "127.0.0.1", str(port)]
            await run_tool(echoscu, *target)
            code, out = await run_tool(storescu, *target, *map(str, files))
            assert code == 0, out
        finally:
            for sock in held:
                sock.close()
    finally:
        assert await agent.stop() == 0
    output = await agent.output()
    lines = [json.loads(line) for line in output.splitlines()]  # every line is one JSON record
    assert "Traceback" not in output
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    refused = [line for line in lines if line["event"] == "dicom.connection_refused"]
    assert {line["reason"] for line in refused} == {
        "too_many_from_address",
        "not_an_association_request",
        "calling_ae_invalid",
        "protocol_version",
    }
    assert len(refused) == 4  # not one per connection of the flood
    assert [line["calling_ae"] for line in refused if line["reason"] == "calling_ae_invalid"] == [
        "EVIL\\nAE\\x1b[31m"
    ]
    assert len(list((tmp_path / "state" / "spool").rglob("*.dcm"))) == 2
