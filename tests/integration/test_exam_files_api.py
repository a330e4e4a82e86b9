"""An exam's record and report files over the local API: stored durably, journaled, served back."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.config import ApiSection
from agent.imaging.handler import ImagingHandler
from agent.web.api import make_app
from tests.unit.test_imaging_index import Index, config, exam_doc

TOKEN = "exam-files-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
LIMIT = 4096


@pytest.fixture
async def index(open_journal) -> Index:
    return Index(await open_journal.open(handlers=(ImagingHandler("imaging", config()),)))


@pytest.fixture
async def client(index, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async def emit(event):
        return (await index.journal.ingest([event]))[0]

    settings = ApiSection(
        enabled=True, token=SecretStr(TOKEN), max_body=1024, max_report_file_bytes=LIMIT
    )
    app = make_app(settings, emit, index.journal.run, exam_files_dir=tmp_path / "files")
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def form(*files: bytes, kind: str = "") -> aiohttp.FormData:
    data = aiohttp.FormData()
    if kind:
        data.add_field("kind", kind)
    for n, content in enumerate(files):
        data.add_field("file", content, filename=f"r{n}", content_type="application/octet-stream")
    return data


async def test_a_report_pdf_is_stored_durably_journaled_and_served_back(client, tmp_path):
    name = f"{hashlib.sha256(PDF).hexdigest()}.pdf"
    with capture_logs() as logs:
        answer = await client.post("/api/v1/exams/E001/files", data=form(PDF), headers=AUTH)
    assert answer.status == 201
    assert (await answer.json())["files"] == [
        {"name": name, "kind": "report_pdf", "size": len(PDF)}
    ]
    assert (tmp_path / "files" / name).read_bytes() == PDF
    assert not [p for p in (tmp_path / "files").iterdir() if p.name.startswith(".tmp-")]
    assert "E001" not in str(logs)
    listed = await (await client.get("/api/v1/exams/E001/files", headers=AUTH)).json()
    assert [f["name"] for f in listed["files"]] == [name]
    served = await client.get(f"/api/v1/exams/E001/files/{name}", headers=AUTH)
    assert served.status == 200 and served.content_type == "application/pdf"
    assert await served.read() == PDF
    # Another exam's file name, or a path, is not served through this exam.
    assert (await client.get(f"/api/v1/exams/E002/files/{name}", headers=AUTH)).status == 404
    sneaky = await client.get("/api/v1/exams/E001/files/..%2Fjournal.db", headers=AUTH)
    assert sneaky.status == 404


async def test_a_raw_file_larger_than_max_body_is_streamed_and_the_limit_is_its_own(client):
    big = PDF + b"%" * (LIMIT - len(PDF))  # 4 times [api] max_body, exactly the file limit
    headers = {**AUTH, "Content-Type": "application/pdf"}
    answer = await client.post("/api/v1/exams/E001/files", data=big, headers=headers)
    assert answer.status == 201
    too_big = await client.post("/api/v1/exams/E001/files", data=big + b"%", headers=headers)
    assert too_big.status == 413
    in_form = await client.post("/api/v1/exams/E001/files", data=form(big + b"%"), headers=AUTH)
    assert in_form.status == 413


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (form(), "file: at least one file required"),
        (form(b"hello"), "file 1: not a PDF, JPEG, PNG or BMP file"),
        (form(JPEG, kind="report_pdf"), "file 1: a jpg file cannot be a report_pdf"),
        (form(PDF, kind="summary"), "kind: one of report_pdf, report_image"),
    ],
)
async def test_what_is_not_a_report_file_is_refused_and_nothing_is_kept(
    client, index, tmp_path, body, problem
):
    answer = await client.post("/api/v1/exams/E001/files", data=body, headers=AUTH)
    assert answer.status == 422
    assert problem in (await answer.json())["problems"]
    assert await index.rows("SELECT * FROM im_exam_files") == []
    assert not (tmp_path / "files").exists() or not list((tmp_path / "files").iterdir())


async def test_the_exam_record_carries_its_states_times_and_files(client):
    doc = exam_doc("E001", status="60", time="2026-11-23 10:00:00")
    doc["examInfo"]["examItemList"][0]["refundTime"] = "2026-11-24 09:00:00"
    assert (await client.post("/api/v1/exams", json=doc, headers=AUTH)).status == 201
    await client.post("/api/v1/exams/E001/files", data=form(PDF, JPEG), headers=AUTH)
    answer = await client.get("/api/v1/exams/E001", headers=AUTH)
    assert answer.status == 200
    record = (await answer.json())["exam"]
    assert record["status"] == "preliminary" and record["exam_at"] == "2026-11-23T10:00:00"
    patient = {"id": "P001", "name": "张三", "sex": "male", "birth_date": "1980-01-01"}
    assert record["patient"] == patient
    assert record["order"]["items"][0]["refunded_at"] == "2026-11-24T09:00:00"
    assert [f["kind"] for f in record["files"]] == ["report_pdf", "report_image"]
    assert (await client.get("/api/v1/exams/E404", headers=AUTH)).status == 404
    bad = await client.post("/api/v1/exams/%20E1/files", data=form(PDF), headers=AUTH)
    assert bad.status == 400


async def test_a_bmp_report_image_is_taken_raw_and_served_back_as_bmp(client, tmp_path):
    out = io.BytesIO()
    Image.new("RGB", (4, 2), (10, 20, 30)).save(out, format="BMP")
    bmp = out.getvalue()
    headers = {**AUTH, "Content-Type": "image/bmp"}
    answer = await client.post("/api/v1/exams/E001/files", data=bmp, headers=headers)
    assert answer.status == 201
    [stored] = (await answer.json())["files"]
    assert (stored["kind"], stored["name"]) == (
        "report_image", f"{hashlib.sha256(bmp).hexdigest()}.bmp"
    )  # fmt: skip
    served = await client.get(f"/api/v1/exams/E001/files/{stored['name']}", headers=AUTH)
    assert served.content_type == "image/bmp" and await served.read() == bmp
    # two letters "BM" alone are no BMP
    text = b"BM is how this note starts, and it is no image at all."
    refused = await client.post("/api/v1/exams/E001/files", data=form(text), headers=AUTH)
    assert refused.status == 422
