"""The DICOM SCP source with real peers: dcmtk storescu/echoscu and pynetdicom as the SCU."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from structlog.testing import capture_logs

from agent.errors import JournalClosedError
from agent.events import Event
from drivers.base import DriverContext
from drivers.dicom import wire
from drivers.dicom.scp import DicomScp, DicomScpConfig
from tests.dicom_files import by_storescu_options, make_ct_slices, make_jpeg_baseline, make_study

WAIT = 20.0
PATIENT = "PID-778899"


def dcmtk(tool: str) -> str:
    """A dcmtk binary (not pynetdicom's same-named app); under CI a missing one fails the test."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with candidate.open("rb") as binary:
                if binary.read(2) != b"#!":  # pynetdicom installs Python scripts of the same name
                    return str(candidate)
    if os.environ.get("CI") == "true":
        pytest.fail(f"dcmtk {tool} is required under CI=true (apt-get install -y dcmtk)")
    pytest.skip(f"dcmtk {tool} is not installed (apt-get install -y dcmtk)")


class RecordingContext:
    """A driver context with a real state directory; `gate`, when set, holds every emit."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.events: list[Event] = []
        self.entered = 0
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None
        self._changed = asyncio.Condition()

    async def emit(self, event: Event) -> bool:
        async with self._changed:
            self.entered += 1
            self._changed.notify_all()
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        return True

    async def wait_for(self, predicate: Callable[[RecordingContext], bool]) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.events if e.kind == kind]


# Every test runs against both acceptors: the lean path and pynetdicom must answer alike.
ACCEPTOR: dict[str, object] = {}


@pytest.fixture(autouse=True, params=["lean", "pynetdicom"])
def acceptor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACCEPTOR, "fast_store", request.param == "lean")


def make_scp(**keys: object) -> DicomScp:
    config = {
        **ACCEPTOR,
        "type": "dicom_scp",
        "ae_title": "EDGE",
        "host": "127.0.0.1",
        "port": 0,
        "allowed_calling_aes": [],
        "min_free_mb": 0,
        "query_retrieve": False,
        **keys,
    }
    return DicomScp("scp", DicomScpConfig.model_validate(config))


@asynccontextmanager
async def serving(scp: DicomScp, ctx: DriverContext) -> AsyncIterator[int]:
    task = asyncio.create_task(scp.run(ctx))
    try:
        async with asyncio.timeout(WAIT):
            await scp.ready.wait()
        assert scp.address is not None
        yield scp.address[1]
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def run_tool(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    async with asyncio.timeout(WAIT):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the File Meta Information (what travels in the C-STORE)."""
    with path.open("rb") as fp:
        read_preamble(fp, False)
        _read_file_meta_info(fp)
        return fp.read()


def send_files(port: int, paths: list[Path], calling: str = "PYSCU") -> list[int]:
    """C-STORE each file's bytes as they are on disk (chunked send); return the statuses."""
    ae = AE(ae_title=calling)
    for syntax in {
        str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in paths
    }:
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(path).Status) for path in paths]
    finally:
        assoc.release()


def request(max_pdu: int = 16_384, calling: str = "RAW") -> bytes:
    """An A-ASSOCIATE-RQ for CT storage (context 1) and verification (context 3)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "EDGE"
    ct = build_context(str(CTImageStorage), ExplicitVRLittleEndian)
    contexts = [ct, build_context(Verification)]
    for number, context in zip((1, 3), contexts, strict=True):
        context.context_id = number
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.3.4"
    primitive.user_information = [max_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def rejection(port: int, calling: str) -> tuple[int, int, int]:
    """Ask by hand and read the answer: the A-ASSOCIATE-RJ's (result, source, reason)."""
    # By hand because pynetdicom's requestor can report a fast rejection as an abort: its
    # association thread may look at the connection only after its DUL thread closed it.
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request(calling=calling))
        answer = b""
        while len(answer) < 10 and (chunk := sock.recv(10 - len(answer))):
            answer += chunk
    assert answer[:1] == bytes([wire.A_ASSOCIATE_RJ]), answer
    return answer[7], answer[8], answer[9]


def associate(port: int, calling: str) -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    if assoc.is_established:
        assoc.release()
    return assoc


async def test_a_study_from_storescu_is_spooled_byte_identical(tmp_path: Path):
    storescu = dcmtk("storescu")
    sent = make_study(tmp_path / "in", PATIENT, series=[("CT", 3), ("MR", 2)], accession="A77")
    study_uid = str(dcmread(sent[0]).StudyInstanceUID)
    jpeg = make_jpeg_baseline(tmp_path / "in" / "sc.dcm", PATIENT, study_uid, accession="A77")
    ctx = RecordingContext(tmp_path / "state")
    with capture_logs() as logs:
        scp = make_scp(allowed_calling_aes=["MODALITY"])
        async with serving(scp, ctx) as port:
            target = ["-aet", "MODALITY", "-aec", "EDGE", "127.0.0.1", str(port)]
            for options, group in by_storescu_options(sent):
                code, out = await run_tool(storescu, *options, *target, *map(str, group))
                assert code == 0, out
            code, out = await run_tool(storescu, "-xy", *target, str(jpeg))  # propose JPEG 8-bit
            assert code == 0, out
            assert scp.is_online()
            assert scp.stats() == {"stored": 6, "associations": 3}  # what /metrics shows
    stored = ctx.kinds("dicom.stored")
    assert len(stored) == 6
    by_uid = {p["sop_instance_uid"]: p for p in stored}
    for source in [*sent, jpeg]:
        original = dcmread(source)
        payload = by_uid[original.SOPInstanceUID]
        spooled = Path(payload["path"])
        assert spooled.is_absolute()
        assert spooled.parent.parent.parent.parent == ctx.state_dir / "spool"
        assert payload["size"] == spooled.stat().st_size
        # The SCP writes its own File Meta; the dataset is the peer's bytes, unchanged.
        assert dataset_bytes(spooled) == dataset_bytes(source)
        assert payload["transfer_syntax"] == original.file_meta.TransferSyntaxUID
        assert payload["sop_class_uid"] == original.SOPClassUID
        assert payload["study_uid"] == study_uid
        assert payload["series_uid"] == original.SeriesInstanceUID
        assert payload["patient_id"] == PATIENT
        assert payload["patient_name"] == "Test^Patient"
        assert payload["accession_number"] == "A77"
        assert payload["modality"] == original.Modality
        assert payload["series_number"] == original.SeriesNumber
        assert payload["instance_number"] == original.InstanceNumber
        assert payload["calling_ae"] == "MODALITY"
        assert payload["received_via"] == "c-store"
    syntaxes = {p["transfer_syntax"] for p in stored}
    assert syntaxes == {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"}
    assert not any((ctx.state_dir / "spool" / "tmp").iterdir())
    assert PATIENT not in repr(logs) and "Test^Patient" not in repr(logs)


async def test_echo_from_echoscu(tmp_path: Path):
    echoscu = dcmtk("echoscu")
    async with serving(make_scp(), RecordingContext(tmp_path)) as port:
        code, out = await run_tool(echoscu, "-aec", "EDGE", "127.0.0.1", str(port))
    assert code == 0, out


async def test_calling_ae_and_address_not_allowed_are_rejected_once_logged(tmp_path: Path):
    scp = make_scp(allowed_calling_aes=["CT1"])
    with capture_logs() as logs:
        async with serving(scp, RecordingContext(tmp_path)) as port:
            first = await asyncio.to_thread(rejection, port, "INTRUDER")
            again = await asyncio.to_thread(rejection, port, "INTRUDER")
            good = await asyncio.to_thread(associate, port, "CT1")
    assert first == again == (0x01, 0x01, 0x03)
    assert good.is_released
    rejected = [e for e in logs if e["event"] == "dicom.association_rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == "calling_ae_not_allowed"

    async with serving(
        make_scp(allowed_addresses=["10.0.0.0/8"]), RecordingContext(tmp_path)
    ) as port:
        outsider = await asyncio.to_thread(rejection, port, "CT1")
    assert outsider == (0x01, 0x01, 0x01)
    async with serving(
        make_scp(allowed_addresses=["127.0.0.0/8"]), RecordingContext(tmp_path)
    ) as port:
        assert (await asyncio.to_thread(associate, port, "CT1")).is_released


@pytest.fixture
def chunked_send():
    """Send files' bytes as they are on disk (pynetdicom otherwise re-encodes a Dataset)."""
    before = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = before


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on garbage
async def test_unreadable_datasets_are_refused_and_quarantined(tmp_path: Path, chunked_send: None):
    good = make_ct_slices(tmp_path / "in", 3, rows=32, columns=32)
    truncated = tmp_path / "in" / "truncated.dcm"
    truncated.write_bytes(good[0].read_bytes()[:-300])
    no_uid = tmp_path / "in" / "no_uid.dcm"
    ds = dcmread(good[1])
    del ds.SOPInstanceUID
    ds.save_as(no_uid)
    garbage = tmp_path / "in" / "garbage.dcm"
    raw = good[2].read_bytes()
    meta_end = len(raw) - len(dataset_bytes(good[2]))
    garbage.write_bytes(raw[:meta_end] + bytes(range(7, 250)) * 3)
    ctx = RecordingContext(tmp_path / "state")
    async with serving(make_scp(), ctx) as port:
        statuses = await asyncio.to_thread(send_files, port, [truncated, no_uid, garbage, good[2]])
    assert statuses[:3] == [0xC000, 0xC000, 0xC000]
    assert statuses[3] == 0x0000
    rejected = ctx.kinds("dicom.rejected")
    assert [r["reason"].split(":")[0] for r in rejected] == [
        "truncated",
        "missing sop_instance_uid",
        rejected[2]["reason"].split(":")[0],
    ]
    for payload, source in zip(rejected, [truncated, no_uid, garbage], strict=True):
        kept = Path(payload["quarantined"])
        assert kept.parent == ctx.state_dir / "quarantine" / "dicom"
        assert dataset_bytes(kept) == dataset_bytes(source)
        assert payload["calling_ae"] == "PYSCU" and payload["size"] == kept.stat().st_size
    assert len(ctx.kinds("dicom.stored")) == 1


async def test_below_the_reserve_nothing_is_acknowledged(tmp_path: Path, chunked_send: None):
    files = make_ct_slices(tmp_path / "in", 3, rows=32, columns=32)
    ctx = RecordingContext(tmp_path / "state")
    async with serving(make_scp(min_free_mb=10**9), ctx) as port:
        statuses = await asyncio.to_thread(send_files, port, files)
    assert statuses == [0xA700] * 3
    assert ctx.kinds("dicom.stored") == []
    assert [r["reason"] for r in ctx.kinds("dicom.rejected")] == ["disk_low"]  # once per change
    spooled = [p for p in (ctx.state_dir / "spool").rglob("*") if p.is_file()]
    assert spooled == []


@asynccontextmanager
async def small_filesystem(mountpoint: Path, size: str) -> AsyncIterator[Path]:
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = f"cannot mount a small tmpfs: {result.stderr.strip()} (run as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_a_full_filesystem_answers_out_of_resources(tmp_path: Path, chunked_send: None):
    files = make_ct_slices(tmp_path / "in", 6, rows=512, columns=512)  # 512 KiB each
    async with small_filesystem(tmp_path / "small", "2m") as mount:
        ctx = RecordingContext(mount / "state")
        async with serving(make_scp(), ctx) as port:
            statuses = await asyncio.to_thread(send_files, port, files)
        assert 0x0000 in statuses and statuses[-1] == 0xA700
        stored = {p["sop_instance_uid"]: p for p in ctx.kinds("dicom.stored")}
        for source, status in zip(files, statuses, strict=True):
            uid = dcmread(source, stop_before_pixels=True).SOPInstanceUID
            assert (status == 0x0000) == (uid in stored)
            if status == 0x0000:
                assert dataset_bytes(Path(stored[uid]["path"])) == dataset_bytes(source)
        assert not any((ctx.state_dir / "spool" / "tmp").iterdir())
        assert [r["reason"] for r in ctx.kinds("dicom.rejected")] == ["disk_low"]


# pynetdicom's path only: the lean path answers after the seal and releases after the commit
# (tests/integration/test_dicom_sealed.py).
@pytest.mark.parametrize("acceptor", ["pynetdicom"], indirect=True)
async def test_the_response_waits_for_the_commit(tmp_path: Path, chunked_send: None):
    files = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    ctx = RecordingContext(tmp_path / "state")
    ctx.gate = asyncio.Event()
    async with serving(make_scp(), ctx) as port:
        sending = asyncio.ensure_future(asyncio.to_thread(send_files, port, files[:1]))
        await ctx.wait_for(lambda c: c.entered == 1)
        done, _ = await asyncio.wait({sending}, timeout=0.5)  # a bounded look for a wrong ack
        assert not done and ctx.events == []
        ctx.gate.set()
        async with asyncio.timeout(WAIT):
            assert await sending == [0x0000]
        ctx.gate = None
        ctx.failure = OSError("journal is gone")
        assert await asyncio.to_thread(send_files, port, files[1:]) == [0xA700]
        ctx.failure = JournalClosedError("the agent is stopping")
        assert await asyncio.to_thread(send_files, port, files[1:]) == [0xA700]
    assert len(ctx.kinds("dicom.stored")) == 1
    # A file whose event may have been journaled is kept; one whose event surely was not, is not.
    assert len(list((ctx.state_dir / "spool").rglob("*.dcm"))) == 2
