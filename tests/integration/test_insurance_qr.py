"""Seed 004 §4.3: when a report is audited (and again when re-audited), the agent asks the
cloud's front-end for the report's QR link, durably, and gives PACS the link and a PNG of it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agent.config import ApiSection
from agent.dispatch.dispatcher import DispatchSettings
from agent.dispatch.policy import Backoff
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import InsuranceImagingUplink
from agent.web.api import make_app
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.unit.test_imaging_index import exam, exam_doc

TOKEN = "qr-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = DispatchSettings(
    concurrency=1, backoff=Backoff(0.01, 0.05), breaker_threshold=1000, poll_interval=0.05
)
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass
class FrontEnd:
    """The cloud's front-end machine as 4.3 describes it: GET qrurl|qrcode with three params."""

    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # next answers
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def qr(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        self.asked.append((request.match_info["kind"], params))
        if self.answers:
            status, body = self.answers.pop(0)
            return web.json_response(body, status=status)
        missing = [p for p in ("accessNumber", "modality", "hospitalId") if not params.get(p)]
        if missing:
            return web.json_response(
                {"code": 202, "message": "传参数不规范（少传参数）", "data": ""}
            )
        if request.match_info["kind"] == "qrcode":
            data = base64.b64encode(PNG_1X1).decode()
        else:
            data = f"http://wx.imagingunion.com/iu_scanFilmInfo?info={params['accessNumber']}"
        return web.json_response({"code": "200", "data": data, "message": "请求成功"})


@pytest.fixture
async def front_end() -> AsyncIterator[tuple[FrontEnd, str]]:
    fake = FrontEnd()
    app = web.Application()
    app.router.add_get("/getway/reportAndFilm/api/{kind}", fake.qr)
    async with TestServer(app) as server:
        yield fake, str(server.make_url("")).rstrip("/")


def insurance(url: str, **qr: Any) -> InsuranceImagingConfig:
    return InsuranceImagingConfig.model_validate(
        {
            "type": "insurance_imaging",
            "hospital_id": "H33010200001",
            "frontend_url": url,
            "qr": {"enabled": True, **qr},
        }
    )


async def open_agent(open_journal: Any) -> Journal:
    plans = {"insurance": UPLINKS["insurance_imaging"].plan}
    imaging = ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": ["insurance"]}, context={"uplink_plans": plans}
    )
    journal: Journal = await open_journal.open(handlers=(ImagingHandler("imaging", imaging),))
    return journal


def audited(number: str, impression: str = "未见异常") -> Any:
    doc = exam_doc(number, status="70", accessionNo=f"ACC-{number}", impression=impression)
    return exam(doc)


@pytest.fixture
async def local_api(open_journal) -> AsyncIterator[tuple[Journal, TestClient[Any, Any]]]:
    journal = await open_agent(open_journal)

    async def emit(event: Any) -> bool:
        return (await journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN))
    app = make_app(settings, emit, journal.run, qr_uplinks=["insurance"])
    async with TestClient(TestServer(app)) as client:
        yield journal, client


async def delivered(journal: Journal, count: int) -> list[dict[str, Any]] | None:
    rows = [r for r in (await outbox_rows(journal)).values() if r["kind"] == "report.audited"]
    done = [r for r in rows if r["state"] in ("delivered", "dead")]
    return done if len(done) >= count else None


async def test_an_audited_report_gets_its_qr_link_and_pacs_its_png(front_end, local_api):
    fake, url = front_end
    journal, client = local_api
    uplink = InsuranceImagingUplink("insurance", insurance(url))
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([exam(exam_doc("E1", status="60", accessionNo="ACC-E1"))])
        await journal.ingest([audited("E1")])
        await eventually(lambda: delivered(journal, 1))
        await journal.ingest([audited("E1")])  # the same audit again: not asked twice
        await journal.ingest([audited("E1", impression="右下肺炎 (修订)")])  # re-audited: asked
        await eventually(lambda: delivered(journal, 2))
    assert [kind for kind, _ in fake.asked] == ["qrurl", "qrurl"]
    assert fake.asked[0][1] == {
        "accessNumber": "ACC-E1",
        "modality": "CT",
        "hospitalId": "H33010200001",
    }
    answer = await client.get("/api/v1/exams/ACC-E1/qr", headers=AUTH)
    assert answer.status == 200
    body = await answer.json()
    assert body["data"] == "http://wx.imagingunion.com/iu_scanFilmInfo?info=ACC-E1"
    assert body["hint"] == "扫描查看数字影像"
    png = await client.get("/api/v1/exams/E1/qr.png", headers=AUTH)
    assert png.status == 200 and png.content_type == "image/png"
    assert (await png.read()).startswith(b"\x89PNG\r\n\x1a\n")


async def test_a_qrcode_answer_image_is_passed_through_as_the_cloud_sent_it(front_end, local_api):
    _, url = front_end
    journal, client = local_api
    uplink = InsuranceImagingUplink("insurance", insurance(url, kind="qrcode"))
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([audited("E2")])
        await eventually(lambda: delivered(journal, 1))
    png = await client.get("/api/v1/exams/E2/qr.png", headers=AUTH)
    assert await png.read() == PNG_1X1


async def test_500_and_no_answer_are_retried_202_is_a_dead_letter_naming_the_reason(
    front_end, local_api
):
    fake, url = front_end
    journal, client = local_api
    fake.answers = [(200, {"code": 500, "message": "内部服务错误", "data": ""}), (503, {})]
    uplink = InsuranceImagingUplink("insurance", insurance(url))
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([audited("E3")])
        (row,) = await eventually(lambda: delivered(journal, 1))
        assert row["state"] == "delivered" and row["attempts"] == 3
        fake.answers = [(200, {"code": 202, "message": "传参数不规范（少传参数）", "data": ""})]
        await journal.ingest([audited("E4")])
        rows = await eventually(lambda: delivered(journal, 2))
    dead = next(r for r in rows if r["state"] == "dead")
    assert dead["last_error"] == "code 202: 传参数不规范（少传参数）"
    pending = await client.get("/api/v1/exams/E4/qr", headers=AUTH)
    assert pending.status == 404 and (await pending.json())["state"] == "dead"
    assert (await client.get("/api/v1/exams/E404/qr", headers=AUTH)).status == 404


def test_qr_needs_the_front_ends_address():
    with pytest.raises(ValueError, match="frontend_url is required when qr is enabled"):
        InsuranceImagingConfig.model_validate(
            {"type": "insurance_imaging", "hospital_id": "H1", "qr": {"enabled": True}}
        )
