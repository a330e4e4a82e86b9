"""Seed 003 §3.2.3.2.1 "不能经过特殊格式压缩": with decompress = true a JPEG 2000 study reaches the
platform in Explicit VR Little Endian, pixels equal to the original's; a syntax no codec
decodes is a dead letter with an alert, not a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

from agent.journal.alerts import open_alerts
from agent.simulators.remote_imaging import RemoteImagingSimulator
from agent.uplinks.remote_imaging.uplink import CODEC_ALERT
from tests.helpers import eventually
from tests.integration.test_remote_imaging import (
    Observed,
    city_platform,
    dispatching,
    instance,
    journal_with,
    new_study,
    push,
    settled,
    uplink_config,
    write_instance,
)


@pytest.fixture
async def platform() -> AsyncIterator[RemoteImagingSimulator]:
    async with city_platform() as simulator:
        yield simulator


MPEG2 = UID("1.2.840.10008.1.2.4.100")  # video: no pixel codec decodes it here
PIXELS = ((np.arange(64 * 64, dtype=np.uint32) * 37) % 4096).astype(np.uint16).reshape(64, 64)


def jpeg2000(folder: Path, study: dict[str, Any]) -> Path:
    """A 64×64 12-bit CT instance of `study`, JPEG 2000 lossless encoded."""
    path = write_instance(folder, study)
    ds = dcmread(path)
    ds.Rows = ds.Columns = 64
    ds.PixelData = PIXELS.tobytes()
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def video(folder: Path, study: dict[str, Any]) -> Path:
    path = write_instance(folder, study)
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds.save_as(path, enforce_file_format=True)
    return path


def received_pixels(data: bytes) -> np.ndarray:
    ds = read_dataset(BytesIO(data), is_implicit_VR=False, is_little_endian=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds.pixel_array


async def test_a_jpeg_2000_study_arrives_decoded_with_the_same_pixels(
    open_journal, platform, tmp_path
):
    journal = await journal_with(open_journal)
    payload = new_study()
    study = payload["study"]
    files = [jpeg2000(tmp_path, study) for _ in range(2)]
    events = [push(payload), *(instance(f, study) for f in files)]
    async with dispatching(journal, Observed(uplink_config(platform, decompress=True))):
        await journal.ingest(events)
        found = await eventually(lambda: settled(journal, *events))
    assert {r["state"] for r in found.values()} == {"delivered"}
    for path in files:
        stored = platform.received.instances[path.stem]  # the same SOP Instance UID
        assert stored.transfer_syntax == ExplicitVRLittleEndian
        assert (received_pixels(stored.data) == PIXELS).all()


async def test_without_decompress_the_jpeg_2000_bytes_go_as_received(
    open_journal, platform, tmp_path
):
    journal = await journal_with(open_journal)
    payload = new_study()
    path = jpeg2000(tmp_path, payload["study"])
    events = [push(payload), instance(path, payload["study"])]
    async with dispatching(journal, Observed(uplink_config(platform))):
        await journal.ingest(events)
        await eventually(lambda: settled(journal, *events))
    assert platform.received.instances[path.stem].transfer_syntax == JPEG2000Lossless


async def test_a_syntax_no_codec_decodes_is_a_dead_letter_with_an_alert(
    open_journal, platform, tmp_path
):
    journal = await journal_with(open_journal)
    payload = new_study()
    path = video(tmp_path, payload["study"])
    events = [push(payload), instance(path, payload["study"])]
    async with dispatching(journal, Observed(uplink_config(platform, decompress=True))):
        await journal.ingest(events)
        found = await eventually(lambda: settled(journal, *events))
    row = found[events[1].id]
    assert row["state"] == "dead"
    assert "no installed codec decodes MPEG2" in row["last_error"]
    alerts = await journal.run(open_alerts)
    assert [a["code"] for a in alerts] == [CODEC_ALERT]
    assert platform.received.instances == {}
