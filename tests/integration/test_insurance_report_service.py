"""Seed 004 §4.1.2: the getway polls the report service on the uplink's listener, by each of the
four time types and by exam number; windows inclusive; the §5 dictionaries applied; bad
requests answered with the seed's code 202."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.events import Event
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.web.listener import ListenerCounters, start_listener
from tests.platform_routes import free_port
from tests.unit.test_exam_record import EVERY_FIELD
from tests.unit.test_imaging_index import config as imaging_config
from tests.unit.test_imaging_index import exam_doc

PATH = "/pacs/reportInfo"


def settings(**report_service: Any) -> InsuranceImagingConfig:
    return InsuranceImagingConfig.model_validate(
        {
            "type": "insurance_imaging",
            "hospital_id": "H33010200001",
            "listener": {
                "enabled": True,
                "port": free_port(),
                "allow": ["127.0.0.1/32"],
            },
            "report_service": report_service,
        }
    )


@asynccontextmanager
async def getway(journal: Journal, section: InsuranceImagingConfig) -> AsyncIterator[Any]:
    """The service as the runtime serves it; yields `ask(body) -> (http status, answer)`."""
    make = UPLINKS["insurance_imaging"].endpoints
    assert make is not None
    endpoints = make("insurance", section)

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    runner = await start_listener("insurance", endpoints, emit, journal.run, ListenerCounters())
    address = f"http://127.0.0.1:{section.listener.port}{section.report_service.path}"
    async with aiohttp.ClientSession() as client:

        async def ask(body: Any, **options: Any) -> tuple[int, dict[str, Any]]:
            sent = {"data": body} if isinstance(body, bytes) else {"json": body}
            async with client.post(address, **sent, **options) as answer:
                return answer.status, await answer.json(content_type=None)

        try:
            yield ask
        finally:
            await runner.cleanup()


def posted(document: dict[str, Any], at: datetime) -> Event:
    return Event("imaging.exam", "api", document, occurred_at=at, received_at=at)


@pytest.fixture
async def journal(open_journal) -> Journal:
    handler = ImagingHandler("imaging", imaging_config(timezone="Asia/Shanghai"))
    journal: Journal = await open_journal.open(handlers=(handler,))
    every = copy.deepcopy(EVERY_FIELD)  # E1: every field, refunded 12-02, audited 12-01 12:00
    every["examInfo"]["examTime"] = "2026-12-01 09:30:00"
    plain = exam_doc("E2", status="60", time="2026-12-01 23:59:59", accessionNo="ACC2")
    late = exam_doc("E3", status="70", time="2026-12-02 00:00:00", accessionNo="ACC3")
    late["reportList"]["affirmTime"] = "2026-12-02 08:00:00"
    await journal.ingest([posted(every, datetime(2026, 12, 1, 4, 0, tzinfo=UTC))])
    await journal.ingest([posted(plain, datetime(2026, 12, 2, 1, 0, tzinfo=UTC))])
    await journal.ingest([posted(late, datetime(2026, 12, 2, 2, 0, tzinfo=UTC))])
    return journal


def window(kind: int | str, start: str, end: str) -> dict[str, Any]:
    return {"type": kind, "startTime": start, "endTime": end}


def exams(answer: dict[str, Any]) -> list[str]:
    assert answer["code"] == 200, answer
    return [record["examNo"] for record in answer["data"]]


async def test_each_type_finds_its_exams_in_an_inclusive_window(journal):
    async with getway(journal, settings()) as ask:

        async def between(kind: int | str, start: str, end: str) -> list[str]:
            status, answer = await ask(window(kind, f"2026-12-{start}", f"2026-12-{end}"))
            assert status == 200
            return exams(answer)

        assert await between(1, "01 00:00:00", "01 23:59:59") == ["E1", "E2"]
        assert await between("1", "01 23:59:59", "02 00:00:00") == ["E2", "E3"]
        # 2: refunded items (E1 on 12-02 10:00); 3: audited (E1 12-01 12:00, E3 12-02 08:00)
        assert await between(2, "02 10:00:00", "02 10:00:00") == ["E1"]
        assert await between(2, "01 00:00:00", "01 23:59:59") == []
        assert await between(3, "01 12:00:00", "02 08:00:00") == ["E1", "E3"]
        # 4: the report last changed, on the agent's clock in Asia/Shanghai (UTC+8)
        assert await between(4, "02 09:00:00", "02 10:00:00") == ["E2", "E3"]


async def test_an_exam_is_found_by_its_number_or_accession_whatever_its_dates(journal):
    async with getway(journal, settings()) as ask:
        assert exams((await ask({"accessionNo": "E3"}))[1]) == ["E3"]
        assert exams((await ask({"accessionNo": "ACC2"}))[1]) == ["E2"]
        nothing = {"code": 200, "message": "成功", "data": []}
        assert (await ask({"accessionNo": "nothing"}))[1] == nothing


async def test_the_answer_is_mapped_with_the_seed_dictionaries(journal):
    async with getway(journal, settings()) as ask:
        (record,) = (await ask({"accessionNo": "E1"}))[1]["data"]
        (plain,) = (await ask({"accessionNo": "E2"}))[1]["data"]
    assert record["hospitalId"] == "H33010200001" and record["accessionNo"] == "ACC1"
    assert (record["sex"], record["patientType"], record["chargeType"]) == ("2", "2", "03")
    assert (record["imgExamType"], record["examRsltCode"], record["prfs"]) == ("2", "2", "90")
    assert record["idCardNo"] == "110101198002030000"
    assert record["examTime"] == "2026-12-01 09:30:00"
    assert record["auditTime"] == "2026-12-01 12:00:00" and record["auditDoctor"] == "钱主任"
    assert record["refundTime"] == "2026-12-02 10:00:00"
    assert record["modifyTime"] == "2026-12-01 12:00:00"  # 04:00 UTC
    assert record["examItems"][0] | {"refundFlag": "1"} == record["examItems"][0]
    assert record["examItems"][1] == {"itemName": "腹部CT", "refundFlag": "0"}
    assert record["bodyPart"] == "胸部、腹部" and record["examConclusion"] == "右下肺炎"
    # No result given: 3 不确定; a source without sex code stays out, nothing invented.
    assert (plain["examRsltCode"], plain["sex"], plain["patientType"]) == ("3", "1", "9")
    assert "auditTime" not in plain and "refundTime" not in plain


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (window(5, "2026-12-01 00:00:00", "2026-12-01 23:59:59"), "type: one of 1, 2, 3, 4"),
        ({"type": 1, "startTime": "2026-12-01 00:00:00"}, "endTime: missing"),
        (window(1, "2026-12-02 00:00:00", "2026-12-01 00:00:00"), "endTime: before startTime"),
        (window(1, "2026-01-01 00:00:00", "2026-12-01 00:00:00"), "window: longer than 31 days"),
        (window(1, "2026/12/01", "2026-12-01 23:59:59"), "startTime: not a time as"),
        ({}, "type: one of 1, 2, 3, 4 (or give accessionNo)"),
        ([1, 2], "body: must be a JSON object"),
        (b"{not json", "body: not UTF-8 JSON"),
        ({"accessionNo": "x" * 65}, "accessionNo: 1-64 characters"),
    ],
)
async def test_a_bad_request_gets_code_202_naming_the_parameter(journal, body, problem):
    with capture_logs() as logs:
        async with getway(journal, settings()) as ask:
            status, answer = await ask(body)
    assert status == 200 and answer["code"] == 202 and answer["data"] == []
    assert answer["message"].startswith(problem)
    assert "张三" not in str(logs)


async def test_a_window_with_more_exams_than_allowed_is_refused_not_cut(journal):
    async with getway(journal, settings(max_records=1)) as ask:
        _, answer = await ask(window(1, "2026-12-01 00:00:00", "2026-12-02 23:59:59"))
    assert answer == {
        "code": 202,
        "message": "window: more than 1 exams, ask for a shorter one",
        "data": [],
    }


async def test_names_formats_and_the_answer_map_are_the_hospitals_to_set(journal, tmp_path: Path):
    mapping = tmp_path / "report.toml"
    mapping.write_text(
        '[maps."report.info"]\nfields = [\n'
        '  { target = "jianchahao", source = "exam_no" },\n'
        '  { target = "shenheshijian", source = "report.audited_at", format = "DT" },\n'
        "]\n",
        encoding="utf-8",
    )
    section = settings(
        path="/ris/report",
        start_param="kssj",
        end_param="jssj",
        type_param="lx",
        time_format="%Y%m%d",
        field_map=str(mapping),
    )
    async with getway(journal, section) as ask:
        _, answer = await ask({"lx": 3, "kssj": "20261201", "jssj": "20261201"})
    assert answer["data"] == [{"jianchahao": "E1", "shenheshijian": "20261201"}]


def test_a_field_map_without_the_report_map_fails_at_start_naming_it(tmp_path: Path):
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[maps.other]\nfields = [{ target = "a", source = "b" }]\n', "utf-8")
    with pytest.raises(ValueError, match=f'field_map: {wrong}: no \\[maps."report.info"\\]'):
        settings(field_map=str(wrong))
    broken = tmp_path / "broken.toml"
    broken.write_text('[maps."report.info"]\nfields = [{ target = "a" }]\n', "utf-8")
    with pytest.raises(ValueError, match=f"field_map: {broken}: maps.report.info.fields"):
        settings(field_map=str(broken))


async def test_a_caller_outside_the_allow_list_gets_403_and_no_exam(journal: Journal) -> None:
    section = settings()  # allow: 127.0.0.1/32 only
    make = UPLINKS["insurance_imaging"].endpoints
    assert make is not None

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    runner = await start_listener(
        "insurance", make("insurance", section), emit, journal.run, ListenerCounters()
    )
    address = f"http://127.0.0.1:{section.listener.port}{PATH}"
    # Linux routes all of 127/8 to lo: a client bound to 127.0.0.2 is another address.
    outside = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    try:
        async with (
            aiohttp.ClientSession(connector=outside) as client,
            client.post(address, json={"accessionNo": "E1"}) as answer,
        ):
            assert answer.status == 403
            assert "张三" not in await answer.text()
    finally:
        await runner.cleanup()
