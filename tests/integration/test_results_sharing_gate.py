"""Seed 001 检查8-12, the agent as the hospital being viewed: a viewerKey or downloadKey is
verified with the platform before anything is shown; images are served byte for byte (or as
JPEG); an unverifiable key is refused (503), a bad one too (403); no key reaches a log."""

from __future__ import annotations

import io
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from pydicom import dcmread

from agent.events import Event
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.simulators.results_sharing import ResultsSharingSimulator
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.web.listener import ListenerCounters, start_listener
from tests.dicom_files import make_dataset, make_jpeg_baseline, save
from tests.integration.test_results_sharing import sharing, start_platform
from tests.platform_routes import free_port
from tests.unit.test_imaging_index import STUDY, stored
from tests.unit.test_imaging_index import config as imaging_config

SERIES = f"{STUDY}.1"


@pytest.fixture
async def platform() -> AsyncIterator[ResultsSharingSimulator]:
    simulator = await start_platform()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def journal(open_journal, tmp_path: Path) -> Journal:
    """A study of two images: a 16-bit CT slice and a JPEG Baseline capture."""
    journal: Journal = await open_journal.open(
        handlers=(ImagingHandler("imaging", imaging_config()),)
    )
    ct = make_dataset(
        modality="CT", patient_id="P001", study_uid=STUDY, series_uid=SERIES,
        series_number=1, instance_number=1, rows=64, columns=48,
    )  # fmt: skip
    files = [save(ct, tmp_path / "spool" / "ct.dcm"),
             make_jpeg_baseline(tmp_path / "spool" / "sc.dcm", "P001", STUDY)]  # fmt: skip
    await journal.ingest(
        [stored(str(n), number=n, path=str(p)) for n, p in enumerate(files, start=1)]
    )
    return journal


def gate_config(base_url: str, tmp_path: Path, allow: str = "127.0.0.1/32") -> ResultsSharingConfig:
    port = free_port()
    return sharing(
        base_url,
        tmp_path,
        gate={
            "listener": {"enabled": True, "port": port, "allow": [allow]},
            "viewer_redirect": "http://pacs.local/viewer?study={study_uid}",
        },
    )


@asynccontextmanager
async def gate(journal: Journal, config: ResultsSharingConfig) -> AsyncIterator[str]:
    make = UPLINKS["results_sharing"].endpoints
    assert make is not None

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    runner = await start_listener("sharing", make("sharing", config), emit, journal.run,
                                  ListenerCounters())  # fmt: skip
    try:
        yield f"http://127.0.0.1:{config.gate.listener.port}"
    finally:
        await runner.cleanup()


def wado(
    key: str, sop: str = "1", content: str = "application/dicom", **more: str
) -> dict[str, str]:
    return {
        "requestType": "WADO", "studyUID": STUDY, "seriesUID": SERIES,
        "objectUID": f"{SERIES}.{sop}", "contentType": content, "downloadKey": key, **more,
    }  # fmt: skip


async def accesses(journal: Journal) -> list[dict[str, Any]]:
    rows = await journal.run(
        lambda c: c.execute(
            "SELECT payload FROM events WHERE kind = 'results_sharing.image_access' ORDER BY rowid"
        ).fetchall()
    )
    return [json.loads(p) for (p,) in rows]


async def test_a_valid_download_key_gets_the_uids_and_the_images_byte_for_byte(
    platform, journal, tmp_path, capsys
):
    config = gate_config(platform.base_url, tmp_path)
    key = platform.issue_key("download", STUDY)
    async with gate(journal, config) as url, aiohttp.ClientSession() as client:
        async with client.get(f"{url}/uids", params={"studyUID": STUDY, "downloadKey": key}) as a:
            assert a.status == 200
            listing = await a.json()
        assert [s["seriesUID"] for s in listing["series"]] == [SERIES]
        assert [i["objectUID"] for i in listing["series"][0]["instances"]] == [
            f"{SERIES}.1", f"{SERIES}.2",
        ]  # fmt: skip
        for sop, name in (("1", "ct.dcm"), ("2", "sc.dcm")):
            async with client.get(f"{url}/wado", params=wado(key, sop)) as answer:
                assert answer.status == 200 and answer.content_type == "application/dicom"
                body = await answer.read()
            stored_file = tmp_path / "spool" / name
            assert body == stored_file.read_bytes()
            assert dcmread(io.BytesIO(body)) == dcmread(stored_file)
        async with client.get(f"{url}/wado", params=wado(key, "1", "image/jpeg")) as answer:
            assert answer.status == 200 and answer.content_type == "image/jpeg"
            jpeg = Image.open(io.BytesIO(await answer.read()))
            assert jpeg.format == "JPEG" and jpeg.size == (48, 64)
        async with client.get(f"{url}/wado", params=wado(key, "2", "image/jpeg")) as answer:
            assert answer.status == 200
            assert Image.open(io.BytesIO(await answer.read())).size == (8, 8)
    # One check, for the UID query; the images' from the cache (positive answers only).
    assert platform.received.key_checks == [("download", STUDY)]
    assert [(a["what"], a["result"]) for a in await accesses(journal)] == [("uids", "allowed")]
    assert key not in capsys.readouterr().out


@pytest.mark.parametrize("case", ["none", "unknown", "expired", "other_study", "viewer_key"])
async def test_a_bad_download_key_is_403_with_a_reason_and_journaled(
    platform, journal, tmp_path, case
):
    config = gate_config(platform.base_url, tmp_path)
    key = {
        "none": "",
        "unknown": "no-such-key",
        "expired": platform.issue_key("download", STUDY, ttl=-1),
        "other_study": platform.issue_key("download", "1.2.3.4"),
        "viewer_key": platform.issue_key("viewer", STUDY),
    }[case]
    async with (
        gate(journal, config) as url,
        aiohttp.ClientSession() as client,
        client.get(f"{url}/wado", params=wado(key)) as answer,
    ):
        assert answer.status == 403
        assert "拒绝" in await answer.text()
    assert [a["result"] for a in await accesses(journal)] == ["refused"]


async def test_the_platform_unreachable_means_503_and_the_cache_never_keeps_a_failure(
    platform, journal, tmp_path
):
    config = gate_config(platform.base_url, tmp_path)
    key = platform.issue_key("download", STUDY)
    async with gate(journal, config) as url, aiohttp.ClientSession() as client:
        await platform.go_down()
        async with client.get(f"{url}/wado", params=wado(key)) as answer:
            assert answer.status == 503
            assert "无法向平台校验" in await answer.text()
        await platform.come_up()
        async with client.get(f"{url}/wado", params=wado(key)) as answer:
            assert answer.status == 200
        async with client.get(f"{url}/wado", params=wado(key, "2")) as answer:
            assert answer.status == 200  # the key's answer cached: not journaled again
    assert [a["result"] for a in await accesses(journal)] == ["unverifiable", "allowed"]


async def test_the_viewer_gate_redirects_a_valid_viewer_key_and_refuses_the_rest(
    platform, journal, tmp_path
):
    config = gate_config(platform.base_url, tmp_path)
    good = platform.issue_key("viewer", STUDY)
    async with gate(journal, config) as url, aiohttp.ClientSession() as client:

        async def view(key: str | None, study: str = STUDY) -> aiohttp.ClientResponse:
            params = {"studyUID": study} | ({"viewerKey": key} if key is not None else {})
            async with client.get(f"{url}/view", params=params, allow_redirects=False) as a:
                await a.read()
                return a

        allowed = await view(good)
        assert allowed.status == 302
        assert allowed.headers["Location"] == f"http://pacs.local/viewer?study={STUDY}"
        assert (await view(None)).status == 403
        assert (await view("forged")).status == 403
        assert (await view(platform.issue_key("download", STUDY))).status == 403
        assert (await view(good, "1.2.3.4")).status == 404  # not a study of ours
        await platform.go_down()
        assert (await view(platform.issue_key("viewer", STUDY))).status == 503
    results = [a["result"] for a in await accesses(journal)]
    assert results == ["allowed", "refused", "refused", "refused", "not_found", "unverifiable"]
    assert all(good not in json.dumps(a) for a in await accesses(journal))


async def test_a_caller_outside_the_allow_list_is_refused_before_any_check(
    platform, journal, tmp_path
):
    config = gate_config(platform.base_url, tmp_path, allow="10.0.0.0/8")
    key = platform.issue_key("download", STUDY)
    async with (
        gate(journal, config) as url,
        aiohttp.ClientSession() as client,
        client.get(f"{url}/wado", params=wado(key)) as answer,
    ):
        assert answer.status == 403
    assert platform.received.key_checks == []


async def test_the_simulator_as_another_hospital_downloads_the_study(platform, journal, tmp_path):
    config = gate_config(platform.base_url, tmp_path)
    async with gate(journal, config) as url:
        found = await platform.download_study(url, STUDY)
    assert found == {
        f"{SERIES}.1": (tmp_path / "spool" / "ct.dcm").read_bytes(),
        f"{SERIES}.2": (tmp_path / "spool" / "sc.dcm").read_bytes(),
    }


async def test_an_image_the_spool_purged_is_410_and_left_out_of_the_uid_query(
    platform, journal, tmp_path
):
    await journal.run(  # what the spool's keeper leaves: the row, marked, and no file
        lambda conn: conn.execute(
            "UPDATE im_instances SET purged_at = '2026-12-01' WHERE sop_uid = ?", (f"{SERIES}.2",)
        )
    )
    (tmp_path / "spool" / "sc.dcm").unlink()
    config = gate_config(platform.base_url, tmp_path)
    key = platform.issue_key("download", STUDY)
    async with gate(journal, config) as url, aiohttp.ClientSession() as client:
        async with client.get(f"{url}/uids", params={"studyUID": STUDY, "downloadKey": key}) as a:
            listing = await a.json()
        assert [i["objectUID"] for i in listing["series"][0]["instances"]] == [f"{SERIES}.1"]
        async with client.get(f"{url}/wado", params=wado(key, "2")) as answer:
            assert answer.status == 410
            assert (await answer.json())["error"].startswith("purged: ")


async def test_an_image_larger_than_the_socket_takes_at_once_arrives_whole(
    platform, journal, tmp_path
):
    # 12 MB: more than a socket's send buffer (at most 4 MB by default) and the reader's
    # window, so the send waits for room part way; the connection then serves the next image.
    big = tmp_path / "spool" / "big.dcm"
    big.write_bytes(b"\0" * 128 + b"DICM" + random.randbytes(12 << 20))
    await journal.ingest([stored("3", number=3, path=str(big))])
    config = gate_config(platform.base_url, tmp_path)
    key = platform.issue_key("download", STUDY)
    async with gate(journal, config) as url, aiohttp.ClientSession() as client:
        for sop, file in (("3", big), ("1", tmp_path / "spool" / "ct.dcm"), ("3", big)):
            async with client.get(f"{url}/wado", params=wado(key, sop)) as answer:
                assert answer.status == 200
                assert answer.content_length == file.stat().st_size
                assert await answer.read() == file.read_bytes()
