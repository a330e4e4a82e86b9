"""Seed 004 §4.2 方式二: the report answers carry one WADO-URI link per image; the getway GETs
them from the uplink's listener and receives the spool files byte for byte, streamed; signed
links expire; nothing outside the index is served."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from tests.integration.test_insurance_report_service import getway
from tests.platform_routes import free_port
from tests.unit.test_imaging_index import STUDY, exam, exam_doc, stored
from tests.unit.test_imaging_index import config as imaging_config

KEY = "wado-link-key-0123456789"


def settings(**wado: Any) -> InsuranceImagingConfig:
    port = free_port()
    return InsuranceImagingConfig.model_validate(
        {
            "type": "insurance_imaging",
            "hospital_id": "H1",
            "listener": {"enabled": True, "port": port, "allow": ["127.0.0.1/32"]},
            "wado": {"enabled": True, "base_url": f"http://127.0.0.1:{port}", **wado},
        }
    )


@pytest.fixture
async def journal(open_journal, tmp_path: Path) -> Journal:
    handler = ImagingHandler("imaging", imaging_config())
    journal: Journal = await open_journal.open(handlers=(handler,))
    files = []
    for n, size in ((1, 300_000), (2, 1000)):
        path = tmp_path / f"spool-{n}.dcm"
        path.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * (size // 256))
        files.append(stored(str(n), number=n, path=str(path)))
    await journal.ingest([*files, exam(exam_doc("E1", accessionNo="ACC001"))])
    return journal


async def links_of(ask: Any) -> list[str]:
    _, answer = await ask({"accessionNo": "E1"})
    (record,) = answer["data"]
    return list(record["imagePath"])


async def test_each_image_of_the_exam_is_a_link_that_gives_the_file_as_received(journal, tmp_path):
    async with getway(journal, settings()) as ask, aiohttp.ClientSession() as client:
        links = await links_of(ask)
        assert [parse_qs(urlsplit(link).query)["objectUID"] for link in links] == [
            [f"{STUDY}.1.1"],
            [f"{STUDY}.1.2"],
        ]
        for n, link in enumerate(links, start=1):
            async with client.get(link) as answer:
                assert answer.status == 200 and answer.content_type == "application/dicom"
                assert await answer.read() == (tmp_path / f"spool-{n}.dcm").read_bytes()


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"requestType": "WADOX"}, 400),
        ({"objectUID": "1.2.x"}, 400),
        ({"seriesUID": None}, 400),
        ({"contentType": "image/jpeg"}, 406),
        ({"seriesUID": f"{STUDY}.9"}, 404),  # the object under other UIDs: not revealed
        ({"objectUID": f"{STUDY}.1.99"}, 404),
    ],
)
async def test_a_request_for_anything_else_is_refused(journal, change, status):
    async with getway(journal, settings()) as ask, aiohttp.ClientSession() as client:
        (link, _) = await links_of(ask)
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()} | change
        query = {k: v for k, v in query.items() if v is not None}
        async with client.get(link.split("?")[0] + "?" + urlencode(query)) as answer:
            assert answer.status == status


async def test_a_file_gone_from_the_spool_is_404_not_an_error(journal, tmp_path):
    async with getway(journal, settings()) as ask, aiohttp.ClientSession() as client:
        (link, _) = await links_of(ask)
        (tmp_path / "spool-1.dcm").unlink()
        async with client.get(link) as answer:
            assert answer.status == 404


async def test_a_purged_image_is_410_gone_with_the_reason(journal, tmp_path):
    async with getway(journal, settings()) as ask, aiohttp.ClientSession() as client:
        (link, _) = await links_of(ask)
        await journal.run(  # what the spool's keeper leaves: the row, marked, and no file
            lambda conn: conn.execute(
                "UPDATE im_instances SET purged_at = '2026-12-01' WHERE sop_uid = ?",
                (f"{STUDY}.1.1",),
            )
        )
        (tmp_path / "spool-1.dcm").unlink()
        async with client.get(link) as answer:
            assert answer.status == 410
            assert (await answer.json())["error"].startswith("purged: ")


async def purge(journal: Journal, sop: str) -> None:
    await journal.run(  # what the spool's keeper leaves: the row, marked (its file deleted)
        lambda conn: conn.execute(
            "UPDATE im_instances SET purged_at = '2026-12-01' WHERE sop_uid = ?", (sop,)
        )
    )


async def test_the_report_answer_lists_no_link_for_a_purged_image(journal):
    await purge(journal, f"{STUDY}.1.1")
    async with getway(journal, settings()) as ask:
        links = await links_of(ask)
        assert [parse_qs(urlsplit(link).query)["objectUID"] for link in links] == [[f"{STUDY}.1.2"]]
    async with getway(journal, settings(per="study")) as ask:
        assert await links_of(ask) == []  # its ZIP would lack the purged image


async def test_signed_links_need_their_token_and_expire(journal):
    signed = settings(link_key=KEY, link_lifetime=600)
    async with getway(journal, signed) as ask, aiohttp.ClientSession() as client:
        (link, _) = await links_of(ask)
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert time.time() + 590 < int(query["expires"]) <= time.time() + 600
        async with client.get(link) as answer:
            assert answer.status == 200
        base = link.split("?")[0]
        for forged in (
            {**query, "token": "0" * 64},
            {k: v for k, v in query.items() if k != "token"},
            {
                **query,
                "expires": str(int(query["expires"]) + 1),
            },  # lengthened: token no longer fits
            {**query, "expires": str(int(time.time()) - 1)},  # expired
        ):
            async with client.get(f"{base}?{urlencode(forged)}") as answer:
                assert answer.status == 403


def test_links_need_the_address_the_platform_reaches_us_at():
    with pytest.raises(ValueError, match="base_url is required when enabled"):
        InsuranceImagingConfig.model_validate(
            {"type": "insurance_imaging", "hospital_id": "H1", "wado": {"enabled": True}}
        )


async def test_a_study_link_gives_its_images_as_one_zip_streamed(journal, tmp_path):
    signed = settings(per="study", link_key=KEY)
    async with getway(journal, signed) as ask, aiohttp.ClientSession() as client:
        (link,) = await links_of(ask)
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert query["contentType"] == "application/zip" and "objectUID" not in query
        async with client.get(link) as answer:
            assert answer.status == 200 and answer.content_type == "application/zip"
            data = await answer.read()
        forged = {**query, "studyUID": f"{STUDY}.9"}
        async with client.get(f"{link.split('?')[0]}?{urlencode(forged)}") as answer:
            assert answer.status == 403  # the token is the study's
        (tmp_path / "spool-2.dcm").unlink()
        async with client.get(link) as answer:
            assert answer.status == 404  # never a ZIP with an image missing
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [f"{STUDY}.1/{STUDY}.1.1.dcm", f"{STUDY}.1/{STUDY}.1.2.dcm"]
        assert archive.read(f"{STUDY}.1/{STUDY}.1.1.dcm") == (tmp_path / "spool-1.dcm").read_bytes()
        assert archive.testzip() is None


async def test_a_zip_is_not_served_when_links_are_per_image(journal):
    async with getway(journal, settings()) as ask, aiohttp.ClientSession() as client:
        (link, _) = await links_of(ask)
        zip_query = f"requestType=WADO&studyUID={STUDY}&contentType=application/zip"
        async with client.get(f"{link.split('?')[0]}?{zip_query}") as answer:
            assert answer.status in (400, 406)
