"""The remote_imaging uplink against its simulator, driven by a real Dispatcher and Journal."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom.dsutils import split_dataset

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.outcomes import Outcome, Retry
from agent.dispatch.policy import Backoff
from agent.events import Event
from agent.journal.alerts import open_alerts
from agent.journal.outbox import OutboxMessage
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from agent.simulators.remote_imaging import (
    RemoteImagingSimulator,
    RemoteImagingSimulatorConfig,
    serve,
)
from agent.uplinks.remote_imaging.config import RemoteImagingConfig
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from drivers.dicom.forward import FORWARDING
from tests.dispatching import outbox_rows as rows
from tests.dispatching import run_dispatcher
from tests.helpers import eventually
from tests.unit.test_remote_imaging_codec import (
    APP_ID,
    HOSPITAL,
    LICENSE,
    ORG_ID,
    config_for,
    exam_payload,
    key_pair,
)

UPLINK = "city_imaging"
FAST = DispatchSettings(
    concurrency=4, backoff=Backoff(0.01, 0.05), breaker_threshold=1000, poll_interval=0.05
)


@dataclass(frozen=True)
class QueueMessages:
    """Test domain handler: event `ri.<kind>` → one message on order key = the event's source."""

    name: str = "test:remote_imaging"
    kinds: tuple[str, ...] = ("ri.*",)

    def handle(self, tx: Transaction, event: Event) -> None:
        tx.enqueue(
            uplink=UPLINK,
            kind=event.kind.removeprefix("ri."),
            order_key=event.source,
            dedupe_key=event.id,
            payload=event.payload,
        )


class Observed(RemoteImagingUplink):
    """The real uplink, recording each outcome."""

    def __init__(self, config: RemoteImagingConfig) -> None:
        super().__init__(UPLINK, config, FORWARDING)
        self.outcomes: list[tuple[str, Outcome]] = []

    async def send(self, message: OutboxMessage) -> Outcome:
        result = await super().send(message)
        self.outcomes.append((message.kind, result))
        return result


def write_instance(
    folder: Path,
    study: dict[str, Any],
    *,
    syntax: UID = ExplicitVRLittleEndian,
    sop_class: UID = CTImageStorage,
    **tags: str,
) -> Path:
    """A small CT instance of `study` written by pydicom (tags override the study's values)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = "张^三", study["patient_id"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study["study_uid"], generate_uid()
    ds.AccessionNumber, ds.Modality, ds.SeriesNumber = study["accession"], "CT", 1
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    for name, value in tags.items():
        setattr(ds, name, value)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The file's dataset as it goes on the wire: everything after the file meta."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def instance(path: Path, study: dict[str, Any], **expect: str) -> Event:
    ds_expect = {
        "PatientID": study["patient_id"],
        "StudyInstanceUID": study["study_uid"],
        "AccessionNumber": study["accession"],
        **expect,
    }
    payload = {"path": str(path), "sop_uid": path.stem, "expect": ds_expect}
    return Event("ri.dicom.instance", f"study:{study['study_uid']}", payload)


def push(payload: dict[str, Any]) -> Event:
    return Event("ri.exam.push", f"study:{payload['study']['study_uid']}", payload)


def new_study(**changes: Any) -> dict[str, Any]:
    payload = exam_payload(study_uid=generate_uid(), **changes)
    return payload


@asynccontextmanager
async def city_platform(**options: Any) -> AsyncIterator[RemoteImagingSimulator]:
    """The seed 003 simulator, started, that knows the test hospital and key pair (`options`:
    more of its config keys)."""
    settings: dict[str, Any] = {
        "type": "remote_imaging",
        "port": 0,
        "dicom_port": 0,
        "app_id": APP_ID,
        "org_id": ORG_ID,
        "license": LICENSE,
        "private_key": key_pair().export_key().decode(),
        "hospital_codes": [HOSPITAL],
        **options,
    }
    simulator = RemoteImagingSimulator(
        "city", RemoteImagingSimulatorConfig.model_validate(settings)
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        simulator.release_held()
        await simulator.stop()


@pytest.fixture(params=[False, True], ids=["pynetdicom_scp", "lean_scp"])
async def platform(request: pytest.FixtureRequest) -> AsyncIterator[RemoteImagingSimulator]:
    """The simulator with each of its storage SCPs: both enforce the same seed rules."""
    async with city_platform(dicom_lean=request.param) as simulator:
        yield simulator


def uplink_config(platform: RemoteImagingSimulator, **overrides: Any) -> RemoteImagingConfig:
    settings: dict[str, Any] = {
        "base_url": platform.base_url,
        "dicom_host": "127.0.0.1",
        "dicom_port": platform.dicom_port,
        "request_timeout": 5.0,
        "acse_timeout": 5.0,
        "dimse_timeout": 5.0,
        "connect_timeout": 2.0,
    }
    return config_for(**{**settings, **overrides})


def dispatching(
    journal: Journal, uplink: RemoteImagingUplink, settings: DispatchSettings = FAST
) -> AbstractAsyncContextManager[Dispatcher]:
    return run_dispatcher(journal, uplink, settings, grace=5.0)


async def settled(journal: Journal, *events: Event) -> dict[str, dict[str, Any]]:
    """The rows once every message left pending/inflight; {} before."""
    found = await rows(journal)
    done = all(r["state"] in ("delivered", "dead") for r in found.values())
    return found if found and done and all(e.id in found for e in events) else {}


async def state_of(journal: Journal, event: Event, state: str) -> bool | None:
    """True once the message `event` queued is in `state`; None before."""
    row = (await rows(journal)).get(event.id)
    return True if row is not None and row["state"] == state else None


async def journal_with(open_journal: Any) -> Journal:
    journal: Journal = await open_journal.open(handlers=(QueueMessages(),))
    return journal


# --- the happy path -----------------------------------------------------------------------------


async def test_push_then_instances_over_one_association(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform))
    payload = new_study()
    study = payload["study"]
    files = [write_instance(tmp_path, study) for _ in range(3)]
    files.append(write_instance(tmp_path, study, syntax=ImplicitVRLittleEndian))
    files.append(write_instance(tmp_path, study, sop_class=SecondaryCaptureImageStorage))
    events = [push(payload), *(instance(f, study) for f in files)]
    async with dispatching(journal, uplink):
        await journal.ingest(events)
        found = await eventually(lambda: settled(journal, *events))

    assert {r["state"] for r in found.values()} == {"delivered"}
    assert [k for k, _ in uplink.outcomes] == ["exam.push"] + ["dicom.instance"] * len(files)
    [pushed] = platform.received.pushes
    assert pushed["hospitalCode"] == HOSPITAL and pushed["examNo"] == "E20240101001"
    assert pushed["imageList"][0]["studyUID"] == study["study_uid"]
    assert platform.received.tokens_issued == 1
    for path in files:  # sent without decoding: the very bytes of the spool file
        stored = platform.received.instances[path.stem]
        assert stored.data == dataset_bytes(path)
        assert stored.calling_ae == "EDGE_AGENT"
    assert platform.received.instances[files[3].stem].transfer_syntax == ImplicitVRLittleEndian
    # a new SOP class needs a new association; the same ones reuse it
    assert platform.received.associations == 2
    assert uplink.scu.associations == 2


async def test_statistics_are_uploaded(open_journal, platform):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform, statistics_classes=["MR"]))
    items = [{"examDate": "2024-01-01", "examClass": "CT", "accordCount": 55}]
    event = Event("ri.exam.statistics", "statistics", {"date": "2024-01-01", "items": items})
    async with dispatching(journal, uplink):
        await journal.ingest([event])
        await eventually(lambda: settled(journal, event))
    assert platform.received.statistics == [
        [
            {"hospitalCode": HOSPITAL, "examDate": "2024-01-01", "examClass": "CT",
             "accordCount": "55"},
            {"hospitalCode": HOSPITAL, "examDate": "2024-01-01", "examClass": "MR",
             "accordCount": "0"},
        ]
    ]  # fmt: skip


# --- refusals -----------------------------------------------------------------------------------


async def test_tag_mismatch_is_a_dead_letter_naming_the_tag(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    payload = new_study()
    study = payload["study"]
    good = write_instance(tmp_path, study)
    wrong = write_instance(tmp_path, study, AccessionNumber="ACC999")
    events = [push(payload), instance(wrong, study), instance(good, study)]
    async with dispatching(journal, Observed(uplink_config(platform))):
        await journal.ingest(events)
        found = await eventually(lambda: settled(journal, *events))
    dead = found[events[1].id]
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert dead["last_error"] == "AccessionNumber differs from the pushed exam"
    assert "ACC999" not in dead["last_error"]
    assert found[events[2].id]["state"] == "delivered"  # a dead letter does not block the key
    assert list(platform.received.instances) == [good.stem]


async def test_a_refused_push_holds_back_its_images(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    payload = new_study()
    payload["exam"]["examInfo"]["examClass"] = "X" * 40  # VC(32): refused before sending
    study = payload["study"]
    image = instance(write_instance(tmp_path, study), study)
    refused = push(payload)
    items = [{"examDate": "2024-01-01", "examClass": "CT", "accordCount": 1}]
    later = Event("ri.exam.statistics", "statistics", {"date": "2024-01-01", "items": items})
    async with dispatching(journal, Observed(uplink_config(platform))):
        await journal.ingest([refused, image])
        await eventually(lambda: state_of(journal, refused, "dead"))
        # A message queued after the refusal and delivered: the image had its chance too.
        await journal.ingest([later])
        await eventually(lambda: state_of(journal, later, "delivered"))
        found = await rows(journal)
    assert found[refused.id]["state"] == "dead" and "examClass" in found[refused.id]["last_error"]
    assert found[image.id]["state"] == "pending"  # never sent without its exam (seed 003)
    assert platform.received.instances == {}


async def test_missing_file_is_a_dead_letter_with_an_alert(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    payload = new_study()
    lost = instance(tmp_path / "gone.dcm", payload["study"])
    async with dispatching(journal, Observed(uplink_config(platform))):
        await journal.ingest([push(payload), lost])
        found = await eventually(lambda: settled(journal, lost))
    assert found[lost.id]["state"] == "dead"
    assert "file missing from the spool" in found[lost.id]["last_error"]
    (alert,) = await journal.run(open_alerts)
    assert alert["code"] == "imaging_instance_missing"


async def test_platform_refusals_are_dead_letters_with_its_words(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    invalid = new_study()
    invalid["exam"]["examInfo"]["examSubClass"] = "C" * 33
    orphan_study = new_study()["study"]  # never pushed: the platform refuses its images
    orphan = instance(write_instance(tmp_path, orphan_study), orphan_study)
    payload = new_study()
    refused = instance(write_instance(tmp_path, payload["study"]), payload["study"])
    events = [push(invalid), orphan, push(payload), refused]
    async with dispatching(journal, Observed(uplink_config(platform))):
        platform.faults.dicom_status_next, platform.faults.dicom_status = 0, 0xC000
        await journal.ingest(events[:3])
        await eventually(lambda: settled(journal, *events[:3]))
        platform.faults.dicom_status_next = 1
        await journal.ingest(events[3:])
        found = await eventually(lambda: settled(journal, *events))
    assert found[events[0].id]["last_error"] == (
        "exam.push not sent: examInfo.examSubClass: 33 characters, at most 32 allowed (VC(32))"
    )
    assert platform.received.pushes[0]["examNo"] == payload["exam"]["examNo"]
    assert found[orphan.id]["last_error"] == (
        "C-STORE status 0xC001 (no exam pushed for this StudyInstanceUID): refused"
    )
    assert found[refused.id]["state"] == "dead"
    assert found[refused.id]["last_error"].startswith("C-STORE status 0xC000")
    assert platform.received.instances == {}


async def test_a_warning_status_is_delivered(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    payload = new_study()
    event = instance(write_instance(tmp_path, payload["study"]), payload["study"])
    platform.faults.dicom_status_next, platform.faults.dicom_status = 1, 0xB000
    async with dispatching(journal, Observed(uplink_config(platform))):
        await journal.ingest([push(payload), event])
        found = await eventually(lambda: settled(journal, event))
    assert found[event.id]["state"] == "delivered"
    assert found[event.id]["response"].startswith("C-STORE status 0xB000")


# --- transient failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"fail_next": 2}, "HTTP 503"),
        ({"error_next": 2}, "platform error: status 999"),
        ({"busy_next": 2}, "platform error: status 1: 系统繁忙"),
        ({"dicom_status_next": 2}, "C-STORE status 0xA700"),
    ],
)
async def test_transient_failures_are_retried(open_journal, platform, tmp_path, fault, error):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform))
    payload = new_study()
    event = instance(write_instance(tmp_path, payload["study"]), payload["study"])
    for name, value in fault.items():
        setattr(platform.faults, name, value)
    async with dispatching(journal, uplink):
        await journal.ingest([push(payload), event])
        found = await eventually(lambda: settled(journal, event))
    assert {r["state"] for r in found.values()} == {"delivered"}
    failures = [o for _, o in uplink.outcomes if isinstance(o, Retry)]
    assert len(failures) == 2 and all(error in o.reason for o in failures), failures


async def test_platform_down_for_a_while(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform))
    first, second = new_study(), new_study()
    one = instance(write_instance(tmp_path, first["study"]), first["study"])
    two = instance(write_instance(tmp_path, second["study"]), second["study"])
    async with dispatching(journal, uplink):
        await journal.ingest([push(first), one])
        await eventually(lambda: settled(journal, one))  # an association is now kept open
        await platform.go_down()
        await journal.ingest([push(second), two])
        await eventually(lambda: _retried(uplink, 3))
        await platform.come_up()
        found = await eventually(lambda: settled(journal, two))
    assert {r["state"] for r in found.values()} == {"delivered"}
    assert set(platform.received.instances) == {
        Path(one.payload["path"]).stem,
        two.payload["sop_uid"],
    }
    assert platform.received.associations == 2


async def _retried(uplink: Observed, count: int) -> bool:
    return sum(isinstance(o, Retry) for _, o in uplink.outcomes) >= count


async def test_dicom_down_while_http_is_up(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform, dicom_port=1))  # nothing listens there
    payload = new_study()
    event = instance(write_instance(tmp_path, payload["study"]), payload["study"])
    async with dispatching(journal, uplink):
        await journal.ingest([push(payload), event])
        await eventually(lambda: _retried(uplink, 2))
    found = await rows(journal)
    assert found[event.id]["state"] == "pending"
    assert "no association with CITYPACS@127.0.0.1:1" in found[event.id]["last_error"]


# --- tokens -------------------------------------------------------------------------------------


async def test_expired_token_is_refreshed(open_journal, platform):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform))
    first, second = new_study(), new_study()
    async with dispatching(journal, uplink) as dispatcher:
        await journal.ingest([push(first)])
        await eventually(lambda: settled(journal))
        platform.expire_tokens()
        event = push(second)
        await journal.ingest([event])
        found = await eventually(lambda: settled(journal, event))
    assert found[event.id]["state"] == "delivered" and found[event.id]["attempts"] == 1
    assert platform.received.tokens_issued == 2
    assert [s for _, s, _ in platform.received.refused] == [1]
    assert dispatcher.counters.retried == 0


async def test_token_is_refreshed_before_it_expires(platform):
    now = [0.0]
    uplink = RemoteImagingUplink(
        UPLINK,
        uplink_config(platform, token_refresh_margin=60),
        FORWARDING,
        monotonic=lambda: now[0],
    )
    await uplink.open()
    try:
        for at, tokens in [(0.0, 1), (7139.0, 1), (7140.0, 2)]:
            now[0] = at
            message = OutboxMessage(1, UPLINK, "exam.push", "k", "d", new_study(), 1, 0, None)
            assert type(await uplink.send(message)).__name__ == "Delivered"
            assert platform.received.tokens_issued == tokens, at
    finally:
        await uplink.close()


@pytest.mark.parametrize(
    "overrides", [{"license": "wrong-license"}, {"sign_fields": ["appId", "license", "orgId"]}]
)
async def test_a_wrong_sign_keeps_messages_queued(open_journal, platform, overrides):
    journal = await journal_with(open_journal)
    event = push(new_study())
    async with dispatching(journal, Observed(uplink_config(platform, **overrides))):
        await journal.ingest([event])
        await eventually(lambda: _attempted(journal, event, 2))
    row = (await rows(journal))[event.id]
    assert row["state"] == "pending"
    assert row["last_error"] == "getToken answered status 1: sign无效：appId、orgId或license错误"
    assert platform.received.pushes == []


async def _attempted(journal: Journal, event: Event, count: int) -> bool:
    row = (await rows(journal)).get(event.id)
    return bool(row and row["attempts"] >= count and row["state"] == "pending")


async def test_time_in_the_sign_is_checked(platform):
    platform.config = platform.config.model_copy(
        update={"sign_fields": ["appId", "license", "time"]}
    )
    config = uplink_config(platform, sign_fields=["appId", "license", "time"])
    clock = [0.0]
    uplink = RemoteImagingUplink(UPLINK, config, FORWARDING, clock=lambda: clock[0])
    await uplink.open()
    try:
        assert not await uplink.healthcheck()  # 1970: far outside time_skew
        clock[0] = __import__("time").time()
        assert await uplink.healthcheck()
    finally:
        await uplink.close()


# --- the simulator with a real DICOM peer -------------------------------------------------------


def dcmtk(tool: str) -> str:
    """A dcmtk binary; under CI a missing dcmtk fails the test rather than skipping it."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required under CI=true (apt-get install -y dcmtk)")
        pytest.skip(f"{tool} is not installed (apt-get install -y dcmtk)")
    return path


async def test_the_simulator_scp_takes_dcmtk_storescu_after_a_push(platform, tmp_path):
    uplink = RemoteImagingUplink(UPLINK, uplink_config(platform), FORWARDING)
    await uplink.open()
    payload = new_study()
    try:
        message = OutboxMessage(1, UPLINK, "exam.push", "k", "d", payload, 1, 0, None)
        assert type(await uplink.send(message)).__name__ == "Delivered"
    finally:
        await uplink.close()
    good = write_instance(tmp_path, payload["study"])
    bad = write_instance(tmp_path, payload["study"], PatientID="OTHER")
    for path in (good, bad):
        process = await asyncio.create_subprocess_exec(
            dcmtk("storescu"), "-aec", "CITYPACS", "127.0.0.1", str(platform.dicom_port),
            str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(30):
            await process.communicate()
    assert list(platform.received.instances) == [good.stem]
    assert platform.received.instances[good.stem].calling_ae == "STORESCU"
    assert platform.received.dicom_refused == [
        (bad.stem, 0xC002, "PatientID differs from the pushed exam")
    ]


async def test_serve_runs_until_cancelled():
    started: asyncio.Queue[RemoteImagingSimulator] = asyncio.Queue()
    task = asyncio.create_task(serve(port=0, dicom_port=0, ready=started.put_nowait))
    simulator = await asyncio.wait_for(started.get(), 10)
    assert simulator.public_key.startswith("-----BEGIN PUBLIC KEY-----")
    uplink = RemoteImagingUplink(
        UPLINK,
        config_for(
            base_url=simulator.base_url,
            app_id="edge-agent",
            org_id="0001",
            license="simulator-license",
            public_key=simulator.public_key,
        ),
        FORWARDING,
    )
    await uplink.open()
    try:
        assert await uplink.healthcheck()
    finally:
        await uplink.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_idle_association_is_released_before_the_network_timeout(
    open_journal, platform, tmp_path
):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform, association_idle=0.2, network_timeout=5.0))
    payload = new_study()
    image = instance(write_instance(tmp_path, payload["study"]), payload["study"])
    async with dispatching(journal, uplink):
        await journal.ingest([push(payload), image])
        await eventually(lambda: settled(journal, image))
        # Released by us, quietly, not aborted later by pynetdicom's network timeout.
        assert uplink.scu.associations == 1  # opened for the image and kept for the next

        async def released() -> bool | None:
            return True if not uplink.scu.kept else None

        await eventually(released)


# --- runs: a study's images on its own association ----------------------------------------

RUNS = dataclasses.replace(FAST, concurrency=2, send_run=8)


async def test_studies_stream_in_runs_each_on_its_own_association(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform, concurrency=2))
    events, images = [], {}
    for _ in range(2):
        payload = new_study()
        study = payload["study"]
        files = [write_instance(tmp_path, study) for _ in range(4)]
        images[study["study_uid"]] = [f.stem for f in files]
        events += [push(payload), *(instance(f, study) for f in files)]
    async with dispatching(journal, uplink, RUNS):
        await journal.ingest(events)
        found = await eventually(lambda: settled(journal, *events))

    assert {r["state"] for r in found.values()} == {"delivered"}
    assert platform.received.associations == 2  # one per study, kept across its images
    assert uplink.scu.associations == 2
    arrived = list(platform.received.instances)
    for sops in images.values():
        assert [sop for sop in arrived if sop in sops] == sops  # in order within the study


async def test_a_refused_push_ends_its_run_before_the_images(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    payload = new_study()
    payload["exam"]["examInfo"]["examClass"] = "X" * 40  # VC(32): refused before sending
    study = payload["study"]
    images = [instance(write_instance(tmp_path, study), study) for _ in range(3)]
    refused = push(payload)
    async with dispatching(journal, Observed(uplink_config(platform)), RUNS):
        await journal.ingest([refused, *images])
        await eventually(lambda: state_of(journal, refused, "dead"))
        found = await rows(journal)
    assert [found[i.id]["state"] for i in images] == ["pending"] * 3
    assert [found[i.id]["attempts"] for i in images] == [0] * 3  # released unsent
    assert platform.received.instances == {}
