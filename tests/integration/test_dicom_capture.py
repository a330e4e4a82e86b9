"""The image_capture source on a real folder: pairs converted into the spool, bad ones rejected."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread

from agent.events import Event
from agent.imaging.study_index import StudyIndexReader
from agent.journal.database import open_database
from drivers.dicom import convert
from drivers.dicom.capture import ImageCapture
from drivers.dicom.capture_config import ImageCaptureConfig
from tests.unit.test_dicom_convert import SIDECAR, make_jpeg


class Ctx:
    """The runtime's side of emit: journals by event id (a replay is not new)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.events: list[Event] = []

    async def emit(self, event: Event) -> bool:
        if any(e.id == event.id for e in self.events):
            return False
        self.events.append(event)
        return True


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[ImageCapture, Ctx, Path]]:
    folder, state = tmp_path / "incoming", tmp_path / "state"
    folder.mkdir()
    state.mkdir()
    conn = open_database(state / "journal.db")  # the index, with one study known by accession
    conn.execute(
        "INSERT INTO im_studies (study_uid, patient_id, accession, first_received, last_received)"
        " VALUES ('1.2.840.99.7', 'P0001', 'ACC-IDX', '2024-01-15T00:00:00Z', "
        "'2024-01-15T00:00:00Z')"
    )
    conn.close()
    config = ImageCaptureConfig(type="image_capture", path=folder, settle=0.05, pair_timeout=0.5)
    driver = ImageCapture("endo_ws", config, StudyIndexReader)
    ctx = Ctx(state)
    task = asyncio.create_task(driver.run(ctx))
    await asyncio.wait_for(driver.wait_until(lambda: driver.watching), 10)
    yield driver, ctx, folder
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _until(driver: ImageCapture, predicate: Callable[[], bool]) -> None:
    await asyncio.wait_for(driver.wait_until(predicate), 10)


def _drop(folder: Path, stem: str, image: bytes, sidecar: dict[str, object] | bytes) -> None:
    (folder / f"{stem}.jpg").write_bytes(image)
    raw = sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode()
    (folder / f"{stem}.json").write_bytes(raw)


async def test_a_pair_becomes_a_spooled_dicom_object(
    running: tuple[ImageCapture, Ctx, Path], tmp_path: Path
) -> None:
    driver, ctx, folder = running
    jpeg = make_jpeg(tmp_path)
    _drop(folder, "IMG_0001", jpeg, {**SIDECAR, "accession": "ACC-IDX"})
    await _until(driver, lambda: driver.counters["stored"] == 1)
    [event] = ctx.events
    assert event.kind == "dicom.stored" and event.source == "endo_ws"
    payload = event.payload
    spooled = Path(payload["path"])
    assert spooled.is_absolute() and spooled.is_relative_to(ctx.state_dir / "spool")
    today = datetime.now(UTC)
    assert spooled.parent == ctx.state_dir / "spool" / f"{today:%Y}" / f"{today:%m}" / f"{today:%d}"
    assert payload["size"] == spooled.stat().st_size
    assert payload["received_via"] == "capture" and payload["calling_ae"] == ""
    assert payload["study_uid"] == "1.2.840.99.7"  # joined the indexed study of the accession
    assert payload["sop_class_uid"] == convert.VL_ENDOSCOPIC
    assert payload["patient_name"] == "Wang^Wei=王^伟" and payload["instance_number"] == 3
    ds = dcmread(spooled)
    assert ds.SOPInstanceUID == payload["sop_instance_uid"]
    assert not list(folder.glob("*.*"))
    assert sorted(p.name for p in (folder / "processed").iterdir()) == [
        "IMG_0001.jpg", "IMG_0001.json"
    ]  # fmt: skip
    assert not list((ctx.state_dir / "spool" / "tmp").iterdir())

    # The same pair again (a crash before the move): a duplicate, its second file removed.
    _drop(folder, "IMG_0001", jpeg, {**SIDECAR, "accession": "ACC-IDX"})
    await _until(driver, lambda: driver.counters["duplicate"] == 1)
    assert len(ctx.events) == 1
    assert list(spooled.parent.iterdir()) == [spooled]
    assert len(list((folder / "processed").iterdir())) == 4  # kept under a new name


async def test_bad_pairs_are_rejected_with_a_reason(
    running: tuple[ImageCapture, Ctx, Path], tmp_path: Path
) -> None:
    driver, ctx, folder = running
    jpeg = make_jpeg(tmp_path)
    _drop(folder, "notjpeg", b"GIF89a" + bytes(100), SIDECAR)
    _drop(folder, "badjson", jpeg, b'{"patient_id": ')
    _drop(folder, "mismatch", jpeg, {**SIDECAR, "accession": "ACC-IDX", "patient_id": "OTHER"})
    (folder / "lonely.jpg").write_bytes(jpeg)
    expected = {"not_jpeg", "bad_sidecar", "patient_mismatch", "missing_sidecar"}
    await _until(driver, lambda: all(driver.counters[r] == 1 for r in expected))
    assert sorted(e.payload["reason"].split(":")[0] for e in ctx.events) == sorted(expected)
    for event in ctx.events:
        assert event.kind == "dicom.rejected" and event.payload["calling_ae"] == ""
        assert Path(event.payload["quarantined"]).exists() and event.payload["size"] > 0
    rejected = folder / "rejected"
    assert (rejected / "notjpeg.reason.txt").read_text().startswith("not_jpeg")
    assert (rejected / "badjson.json").exists() and (rejected / "badjson.jpg").exists()
    assert (rejected / "lonely.reason.txt").exists()
    assert not list((ctx.state_dir / "spool").glob("**/*.dcm"))
    assert not list(folder.glob("*.*"))


def test_config_is_checked_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="UID root"):
        ImageCaptureConfig(type="image_capture", path=tmp_path, uid_root="1.2.x")
    with pytest.raises(ValueError, match="json"):
        ImageCaptureConfig(type="image_capture", path=tmp_path, image_suffixes=[".json"])
