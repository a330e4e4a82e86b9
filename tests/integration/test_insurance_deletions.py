"""Seed 004 §4.5: PACS tells the agent which images a doctor deleted; they leave the index (C-FIND,
C-MOVE, image links, report answers) and the cloud gets a durable notice of who, when, whose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from pydicom.dataset import Dataset

from agent.config import ApiSection
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.imaging.instances import QUERIES as IMAGES
from agent.imaging.study_index import StudyIndexReader
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import InsuranceImagingUplink
from agent.web.api import make_app
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_insurance_qr import FAST
from tests.unit.test_imaging_index import STUDY, exam, exam_doc, stored

TOKEN = "deletion-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Receiver:
    """4.5's receiving end: whatever method it is configured for; answers as told."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def notice(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            fields = dict(request.query)
        elif request.content_type == "application/json":
            fields = await request.json()
        else:
            fields = dict(await request.post())  # type: ignore[arg-type]
        self.got.append((request.method, fields))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    fake = Receiver()
    app = web.Application()
    app.router.add_route("*", "/deleted", fake.notice)
    async with TestServer(app) as server:
        yield fake, str(server.make_url("/deleted"))


@pytest.fixture
async def agent(open_journal, tmp_path) -> AsyncIterator[tuple[Journal, TestClient[Any, Any]]]:
    plans = {"insurance": UPLINKS["insurance_imaging"].plan}
    imaging = ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": ["insurance"]}, context={"uplink_plans": plans}
    )
    journal: Journal = await open_journal.open(handlers=(ImagingHandler("imaging", imaging),))
    images = [stored("1", series="1"), stored("2", series="1", number=2), stored("3", series="2")]
    await journal.ingest([*images, exam(exam_doc("E1", accessionNo="ACC001"))])

    async def emit(event: Any) -> bool:
        return (await journal.ingest([event]))[0]

    app = make_app(ApiSection(enabled=True, token=SecretStr(TOKEN)), emit, journal.run)
    async with TestClient(TestServer(app)) as client:
        yield journal, client


def insurance(url: str, **deletion: Any) -> InsuranceImagingConfig:
    return InsuranceImagingConfig.model_validate(
        {
            "type": "insurance_imaging",
            "hospital_id": "H33010200001",
            "deletion": {"enabled": True, "url": url, **deletion},
        }
    )


def series_found(db: Path) -> list[str]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = STUDY
    identifier.SeriesInstanceUID = ""
    found = StudyIndexReader(db).find(identifier, patient_root=False)
    return sorted(str(found.response(row, "AE").SeriesInstanceUID) for row in found.rows)


async def notices(journal: Journal) -> list[dict[str, Any]] | None:
    rows = [r for r in (await outbox_rows(journal)).values() if r["kind"] == "study.deleted"]
    return rows if rows and all(r["state"] in ("delivered", "dead") for r in rows) else None


async def test_a_deleted_series_leaves_the_index_and_the_cloud_is_told(agent, receiver, tmp_path):
    journal, client = agent
    fake, url = receiver
    fake.statuses = [503]  # the cloud is down once: the notice waits, then goes
    assert series_found(tmp_path / "journal.db") == [f"{STUDY}.1", f"{STUDY}.2"]
    body = {"by": "赵医生", "at": "2026-12-07 10:15:00", "series_uids": [f"{STUDY}.2"]}
    async with run_dispatcher(journal, InsuranceImagingUplink("insurance", insurance(url)), FAST):
        answer = await client.post("/api/v1/exams/ACC001/deletions", json=body, headers=AUTH)
        assert answer.status == 201
        (row,) = await eventually(lambda: notices(journal))
    assert row["state"] == "delivered" and row["attempts"] == 2
    assert fake.got[-1] == (
        "POST",
        {
            "patientName": "ZHANG^SAN",
            "accessionNo": "ACC001",
            "hospitalId": "H33010200001",
            "operateDoctorName": "赵医生",
            "operateDateTime": "2026-12-07 10:15:00",
        },
    )
    # C-FIND, C-MOVE and image links no longer see it; the rest of the study stays.
    assert series_found(tmp_path / "journal.db") == [f"{STUDY}.1"]
    in_study = await journal.run(lambda conn: IMAGES.study(conn, STUDY))
    assert [i.sop_uid for i in in_study] == [f"{STUDY}.1.1", f"{STUDY}.1.2"]
    gone = await journal.run(lambda conn: IMAGES.instance(conn, f"{STUDY}.2.3"))
    assert gone is None
    kept = await journal.run(
        lambda conn: conn.execute("SELECT sop_uid, path FROM im_deleted").fetchall()
    )
    assert kept == [(f"{STUDY}.2.3", f"/var/lib/edge-agent/spool/{STUDY}/3.dcm")]


@pytest.mark.parametrize("method", ["post_form", "get"])
async def test_the_whole_accession_deleted_by_form_or_get(agent, receiver, tmp_path, method):
    journal, client = agent
    fake, url = receiver
    settings = insurance(url, method=method, time_format="%Y%m%d%H%M%S")
    uplink = InsuranceImagingUplink("insurance", settings)
    async with run_dispatcher(journal, uplink, FAST):
        body = {"by": "钱主任", "at": "2026-12-07T10:15:00"}
        answer = await client.post("/api/v1/exams/ACC001/deletions", json=body, headers=AUTH)
        assert answer.status == 201
        await eventually(lambda: notices(journal))
    ((sent_by, fields),) = fake.got
    assert sent_by == ("GET" if method == "get" else "POST")
    assert fields["operateDateTime"] == "20261207101500"
    assert series_found(tmp_path / "journal.db") == []
    studies = await journal.run(lambda conn: conn.execute("SELECT * FROM im_studies").fetchall())
    assert studies == []  # the emptied study is gone from C-FIND too


@pytest.mark.parametrize(
    ("accession", "body", "status"),
    [
        ("ACC404", {"by": "x"}, 404),
        ("ACC001", {}, 422),
        ("ACC001", {"by": "x", "at": "2026-12-07T10:15:00+08:00"}, 422),
        ("ACC001", {"by": "x", "series_uids": ["1.2.x"]}, 422),
    ],
)
async def test_a_deletion_of_nothing_known_or_badly_said_is_refused(agent, accession, body, status):
    journal, client = agent
    answer = await client.post(f"/api/v1/exams/{accession}/deletions", json=body, headers=AUTH)
    assert answer.status == status
    assert await journal.run(lambda conn: conn.execute("SELECT * FROM im_deleted").fetchall()) == []


def test_notices_need_the_url_the_seed_leaves_blank():
    with pytest.raises(ValueError, match="url is required when enabled"):
        InsuranceImagingConfig.model_validate(
            {"type": "insurance_imaging", "hospital_id": "H1", "deletion": {"enabled": True}}
        )


async def test_an_iocm_rejection_note_from_pacs_is_a_deletion_too(agent, receiver, tmp_path):
    journal, _ = agent
    fake, url = receiver
    kos = stored("9", series="9", number=1, modality="KO")
    kos.payload["sop_class_uid"] = "1.2.840.10008.5.1.4.1.1.88.59"
    kos.payload["calling_ae"] = "PACS01"
    withdrawn = [[STUDY, f"{STUDY}.2", f"{STUDY}.2.3"]]
    kos.payload["rejected"] = {"code": "113001", "instances": withdrawn}
    async with run_dispatcher(journal, InsuranceImagingUplink("insurance", insurance(url)), FAST):
        await journal.ingest([kos])
        await eventually(lambda: notices(journal))
    ((_, fields),) = fake.got
    assert fields["operateDoctorName"] == "PACS01 (IOCM 113001)"
    assert fields["accessionNo"] == "ACC001"
    # The rejected image is gone; the note itself is indexed like any object of the study.
    assert series_found(tmp_path / "journal.db") == [f"{STUDY}.1", f"{STUDY}.9"]
