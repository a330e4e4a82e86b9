"""Seed 003 §3.2.3.3 with several hospitals behind one front-end (医共体): each exam names its
hospital, and the daily statistics reach the platform per hospital and exam class."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.events import Event
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.simulators.remote_imaging import RemoteImagingSimulator
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from drivers.dicom.forward import FORWARDING
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_remote_imaging import FAST, city_platform, uplink_config
from tests.unit.test_imaging_index import config, exam, exam_doc
from tests.unit.test_remote_imaging_codec import HOSPITAL

OTHER = "H0002"


@pytest.fixture
async def platform() -> AsyncIterator[RemoteImagingSimulator]:
    async with city_platform(hospital_codes=[HOSPITAL, OTHER]) as simulator:
        yield simulator


async def delivered(journal: Journal) -> bool | None:
    rows = await outbox_rows(journal)
    return True if rows and all(r["state"] == "delivered" for r in rows.values()) else None


async def test_two_hospitals_statistics_run(open_journal, platform):
    handler = ImagingHandler("imaging", config(forward_to=["remote_imaging"]))
    journal: Journal = await open_journal.open(handlers=(handler,))
    await journal.ingest(
        [
            exam(exam_doc("E1")),  # the front-end's own hospital
            exam(exam_doc("E2", hospitalCode=OTHER)),
            exam(exam_doc("E3", hospitalCode=OTHER, exam_class="MR")),
            exam(exam_doc("E4", hospitalCode=OTHER, status="60")),  # not final: 0
        ]
    )
    uplink = RemoteImagingUplink(
        "remote_imaging",
        uplink_config(platform, statistics_classes=["CT", "MR"], hospital_codes=[OTHER]),
        FORWARDING,
    )
    due = {"date": "2026-11-23", "slot": "20:00"}
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([Event("imaging.statistics_due", "imaging", due)])
        await eventually(lambda: delivered(journal))
    [rows] = platform.received.statistics
    found = {(r["hospitalCode"], r["examClass"]): r["accordCount"] for r in rows}
    assert found == {
        (HOSPITAL, "CT"): "1",
        (HOSPITAL, "MR"): "0",
        (OTHER, "CT"): "1",
        (OTHER, "MR"): "1",
    }
    assert {r["examDate"] for r in rows} == {"2026-11-23"}
