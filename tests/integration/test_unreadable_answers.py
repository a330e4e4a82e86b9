"""A platform answering garbage with HTTP 200 (a proxy's HTML page, JSON cut short) is not retried
forever: after the uplink's unreadable_answer_attempts the message is a dead letter with an alert,
on every uplink that reads its platform's answers (type "http" reads none: any 2xx is delivered)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from agent.dispatch.dispatcher import UNREADABLE_ALERT, DispatchSettings
from agent.dispatch.outcomes import Delivered, Outcome, Retry
from agent.dispatch.policy import Backoff
from agent.dispatch.uplink import Uplink
from agent.events import Event
from agent.journal.outbox import OutboxMessage
from agent.journal.queries import connect, retry
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from agent.simulators.base import SimulatedCloud
from agent.simulators.http_cloud import HttpCloud, HttpCloudConfig
from agent.simulators.insurance_imaging import (
    InsuranceImagingSimulator,
    InsuranceImagingSimulatorConfig,
)
from agent.simulators.zhejiang_endoscope import (
    ZhejiangEndoscopeSimulator,
    ZhejiangEndoscopeSimulatorConfig,
)
from agent.uplinks.http.uplink import HttpUplink, HttpUplinkConfig
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import InsuranceImagingUplink
from agent.uplinks.provincial_imaging.elements import normalise
from agent.uplinks.provincial_imaging.uplink import APPLY_KIND
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from agent.uplinks.zhejiang_endoscope.examples import EXAMPLES
from agent.uplinks.zhejiang_endoscope.uplink import ZhejiangEndoscopeUplink
from drivers.dicom.forward import FORWARDING
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import ZHEJIANG_KEY, ZHEJIANG_SECRET, eventually
from tests.integration import test_provincial_imaging as provincial
from tests.integration import test_remote_imaging as imaging
from tests.integration import test_zhejiang_endoscope as zhejiang
from tests.unit.test_provincial_elements import seed_order

ATTEMPTS = 3
SETTINGS = DispatchSettings(
    concurrency=1,
    backoff=Backoff(0.01, 0.05),
    breaker_threshold=1000,
    poll_interval=0.05,
    unreadable_attempts=ATTEMPTS,
)
GARBAGE = {"portal_next": 100, "garble_next": 0}, {"portal_next": 0, "garble_next": 100}


@dataclass(frozen=True)
class Queue:
    """Test handler: event `q` → one message for payload {uplink, kind, body}."""

    name: str = "test:queue"
    kinds: tuple[str, ...] = ("q",)

    def handle(self, tx: Transaction, event: Event) -> None:
        p = event.payload
        tx.enqueue(
            uplink=p["uplink"],
            kind=p["kind"],
            order_key=event.source,
            dedupe_key=event.id,
            payload=p["body"],
        )


def message(uplink: str, kind: str, body: dict[str, Any]) -> Event:
    return Event("q", "key-1", {"uplink": uplink, "kind": kind, "body": body})


def zhejiang_platform(answer_format: Literal["json", "xml"]) -> ZhejiangEndoscopeSimulator:
    """The Zhejiang simulator (not started) answering uploads in `answer_format`."""
    return ZhejiangEndoscopeSimulator(
        "zj",
        ZhejiangEndoscopeSimulatorConfig(
            type="zhejiang_endoscope",
            port=0,
            access_key=ZHEJIANG_KEY,
            access_secret=SecretStr(ZHEJIANG_SECRET),
            answer_format=answer_format,
        ),
    )


@dataclass
class Case:
    platform: SimulatedCloud[Any]
    uplink: Uplink
    event: Event


@pytest.fixture(
    params=["zhejiang_json", "zhejiang_xml", "remote_imaging", "insurance_qr", "provincial_imaging"]
)
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    """One reading uplink and its platform's simulator."""
    kind = request.param
    if kind.startswith("zhejiang"):
        sim = zhejiang_platform("xml" if kind.endswith("xml") else "json")
        await sim.start()
        up: Uplink = ZhejiangEndoscopeUplink("zj", zhejiang.uplink_config(sim.base_url))
        event = message("zj", "rinseWater", dict(EXAMPLES["rinseWater"]))
        yield Case(sim, up, event)
        await sim.stop()
    elif kind == "remote_imaging":
        async with imaging.city_platform() as city:
            up = RemoteImagingUplink("city", imaging.uplink_config(city), FORWARDING)
            yield Case(city, up, message("city", "exam.push", imaging.new_study()))
    elif kind == "provincial_imaging":
        async with provincial.platform_and_uplink() as (province, up):
            order = {"order": normalise(seed_order())}
            yield Case(province, up, message(up.name, APPLY_KIND, order))
    else:
        front = InsuranceImagingSimulator(
            "ins", InsuranceImagingSimulatorConfig(type="insurance_imaging", port=0)
        )
        await front.start()
        config = InsuranceImagingConfig.model_validate(
            {
                "type": "insurance_imaging",
                "hospital_id": front.config.hospital_id,
                "frontend_url": front.url,
                "qr": {"enabled": True},
            }
        )
        record = {"accession": "ACC001", "order": {"exam_class": "CT"}}
        audited = message("ins", "report.audited", {"record": record})
        yield Case(front, InsuranceImagingUplink("ins", config), audited)
        await front.stop()


async def alerts(journal: Journal) -> list[tuple[str, str, str]]:
    def read(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
        return conn.execute("SELECT code, severity, origin FROM alerts ORDER BY id").fetchall()

    return await journal.run(read)


async def dead(journal: Journal) -> dict[str, Any] | None:
    [row] = (await outbox_rows(journal)).values()
    return row if row["state"] == "dead" else None


@pytest.mark.parametrize("garbage", GARBAGE, ids=["html_page", "truncated_json"])
async def test_garbage_with_200_ends_as_a_dead_letter_with_an_alert(open_journal, case, garbage):
    journal: Journal = await open_journal.open(handlers=(Queue(),))
    for name, count in garbage.items():
        setattr(case.platform.faults, name, count)
    requests_before = case.platform.received.requests
    async with run_dispatcher(journal, case.uplink, SETTINGS):
        await journal.ingest([case.event])
        row = await eventually(lambda: dead(journal))
    assert row["attempts"] == ATTEMPTS
    assert row["last_error"].startswith(f"{ATTEMPTS} unreadable answers in a row")
    assert "unexpected answer: HTTP 200" in row["last_error"]
    assert case.platform.received.requests - requests_before == ATTEMPTS  # then no more asking
    [(code, severity, origin)] = await alerts(journal)
    assert (code, severity, origin.split(":")[0]) == (UNREADABLE_ALERT, "error", "outbox")


class Scripted(Uplink):
    """Answers each send with the next outcome of its script."""

    def __init__(self, script: list[Outcome]) -> None:
        super().__init__("scripted")
        self.script = script

    async def send(self, message: OutboxMessage) -> Outcome:
        return self.script.pop(0)


async def test_a_readable_answer_in_between_starts_the_count_again(open_journal):
    journal: Journal = await open_journal.open(handlers=(Queue(),))
    garbled = Retry("unexpected answer: HTTP 200: <html>", unreadable=True)
    script: list[Outcome] = [garbled, garbled, Retry("HTTP 503"), garbled, garbled, Delivered("ok")]
    async with run_dispatcher(journal, Scripted(script), SETTINGS):
        await journal.ingest([message("scripted", "any", {})])
        row = await eventually(lambda: _delivered(journal))
    assert row["attempts"] == 6
    assert await alerts(journal) == []


async def _delivered(journal: Journal) -> dict[str, Any] | None:
    [row] = (await outbox_rows(journal)).values()
    return row if row["state"] == "delivered" else None


async def test_the_http_uplink_reads_no_body_so_a_200_page_is_delivered(open_journal):
    cloud = HttpCloud("bus", HttpCloudConfig(type="http_cloud", port=0))
    await cloud.start()
    try:
        journal: Journal = await open_journal.open(handlers=(Queue(),))
        uplink = HttpUplink(
            "bus", HttpUplinkConfig.model_validate({"type": "http", "url": f"{cloud.url}/ingest"})
        )
        cloud.faults.portal_next = 1
        async with run_dispatcher(journal, uplink, SETTINGS):
            await journal.ingest([message("bus", "synthetic", {"n": 1})])
            row = await eventually(lambda: _delivered(journal))
        assert row["attempts"] == 1 and "Gateway login" in row["response"]
    finally:
        await cloud.stop()


async def test_the_zhejiang_platform_answering_xml_is_understood(open_journal):
    sim = zhejiang_platform("xml")
    await sim.start()
    try:
        journal: Journal = await open_journal.open(handlers=(Queue(),))
        uplink = ZhejiangEndoscopeUplink("zj", zhejiang.uplink_config(sim.base_url))
        sim.faults.error_next, sim.faults.error_msg = 1, "参数校验失败：模拟错误"
        refused = Event("q", "key-2", {"uplink": "zj", "kind": "sterProcess",
                                        "body": dict(EXAMPLES["sterProcess"])})  # fmt: skip
        async with run_dispatcher(journal, uplink, SETTINGS):
            await journal.ingest([refused])
            await journal.ingest([message("zj", "rinseWater", dict(EXAMPLES["rinseWater"]))])
            await sim.wait_accepted("rinseWater")
            rows = await eventually(lambda: _both_settled(journal))
        states = {r["kind"]: (r["state"], r["last_error"]) for r in rows.values()}
        assert states == {
            "sterProcess": ("dead", "code 400: 参数校验失败：模拟错误"),
            "rinseWater": ("delivered", None),
        }
        assert "<JsonResult>" in rows[next(iter(rows))]["response"]
    finally:
        await sim.stop()


async def _both_settled(journal: Journal) -> dict[str, Any] | None:
    rows = await outbox_rows(journal)
    done = len(rows) == 2 and all(r["state"] in ("delivered", "dead") for r in rows.values())
    return rows if done else None


async def test_a_restart_keeps_the_count_and_an_operator_retry_starts_it_again(
    open_journal, tmp_path
):
    garbled = Retry("unexpected answer: HTTP 200: <html>", unreadable=True)
    path = tmp_path / "journal.db"
    journal: Journal = await open_journal.open(path, handlers=(Queue(),))
    first = Scripted([garbled, garbled])  # ATTEMPTS - 1 unreadable answers, then a restart
    async with run_dispatcher(journal, first, SETTINGS):
        await journal.ingest([message("scripted", "any", {})])
        await eventually(lambda: _attempted(journal, ATTEMPTS - 1))
    await journal.close()
    journal = await open_journal.open(path, handlers=(Queue(),))
    async with run_dispatcher(journal, Scripted([garbled]), SETTINGS):  # a new process
        row = await eventually(lambda: dead(journal))
    assert row["attempts"] == ATTEMPTS  # not ATTEMPTS more after the restart
    assert row["last_error"].startswith(f"{ATTEMPTS} unreadable answers in a row")

    async with connect(path) as db:
        assert await retry(db, [1], actor="test") == [1]
    again = Scripted([garbled, Delivered("ok")])  # one unreadable answer no longer gives up
    async with run_dispatcher(journal, again, SETTINGS):
        row = await eventually(lambda: _delivered(journal))
    assert row["attempts"] == ATTEMPTS + 2


async def _attempted(journal: Journal, count: int) -> dict[str, Any] | None:
    [row] = (await outbox_rows(journal)).values()
    return row if row["attempts"] == count and row["state"] == "pending" else None
