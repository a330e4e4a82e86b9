"""Seed 003 §3.4.1.1 answer codes through a real dispatcher and the provincial simulator: 0
delivered, -1/-2 retried until the platform recovers, -3 a dead letter naming the elements,
-99 on a DELETE delivered; a SOAP fault is retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agent.events import Event
from agent.journal.writer import Journal
from agent.simulators.provincial_imaging import (
    ProvincialImagingSimulator,
    ProvincialImagingSimulatorConfig,
)
from agent.uplinks.provincial_imaging.config import ProvincialImagingConfig
from agent.uplinks.provincial_imaging.elements import Rules, apply_no, normalise
from agent.uplinks.provincial_imaging.orders import ORDER, ProvincialOrders
from agent.uplinks.provincial_imaging.uplink import ProvincialImagingUplink
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_remote_imaging import FAST
from tests.unit.test_provincial_elements import seed_order

LICENSE = "F9BDEFC9EDD6426E57E9DFEFE3A74FA2"


def uplink_config(sim: ProvincialImagingSimulator, **changes: Any) -> ProvincialImagingConfig:
    return ProvincialImagingConfig.model_validate(
        {
            "type": "provincial_imaging",
            "service_url": sim.service_url,
            "license": LICENSE,
            "hospital_id": "7173",
            "request_timeout": 5.0,
            **changes,
        }
    )


@asynccontextmanager
async def platform_and_uplink(
    **changes: Any,
) -> AsyncIterator[tuple[ProvincialImagingSimulator, ProvincialImagingUplink]]:
    """The simulator, started, and an uplink pointed at it."""
    sim = ProvincialImagingSimulator(
        "province", ProvincialImagingSimulatorConfig(type="provincial_imaging", port=0)
    )
    await sim.start()
    try:
        yield sim, ProvincialImagingUplink("province", uplink_config(sim, **changes))
    finally:
        await sim.stop()


def order_event(order: dict[str, Any]) -> Event:
    normal = normalise(order)
    key = apply_no(normal, Rules(hospital_id="7173"))
    return Event(ORDER, "api", {"uplink": "province", "apply_no": key, "order": normal})


async def settled(journal: Journal, count: int) -> dict[str, Any] | None:
    rows = await outbox_rows(journal)
    done = len(rows) == count and all(r["state"] in ("delivered", "dead") for r in rows.values())
    return rows if done else None


async def test_the_platforms_codes_become_delivered_retried_or_dead(open_journal):
    journal: Journal = await open_journal.open(handlers=(ProvincialOrders("province"),))
    async with platform_and_uplink() as (sim, uplink), run_dispatcher(journal, uplink, FAST):
        sim.faults.codes_next = ["-1", "-1"]  # 写入申请单出错 twice, then the platform recovers
        await journal.ingest([order_event(seed_order())])
        rows = await eventually(lambda: settled(journal, 1))
        [first] = rows.values()
        assert (first["state"], first["attempts"]) == ("delivered", 3)
        assert [c["code"] for c in sim.received.calls] == ["-1", "-1", "0"]

        sim.faults.fail_next = 1  # an HTTP 503 on the way is retried too
        cancel = {"Action": "DELETE", "Patient": {"SickNo": "C9"}, "Exam": {"ApplyNo": "X9"}}
        await journal.ingest([order_event(cancel)])
        rows = await eventually(lambda: settled(journal, 2))
        assert [r["state"] for r in rows.values()] == ["delivered", "delivered"]  # -99: gone

        update = seed_order(Exam__ApplyNo="Y1")
        update["Action"] = "UPDATE"
        await journal.ingest([order_event(update)])
        rows = await eventually(lambda: settled(journal, 3))
        last = list(rows.values())[-1]
        assert last["state"] == "dead"
        assert last["last_error"] == "SynApplyInfo UPDATE refused: code -99: 该申请单不存在或已删除"


async def test_a_wrong_license_is_a_dead_letter_naming_the_element_not_its_value(open_journal):
    journal: Journal = await open_journal.open(handlers=(ProvincialOrders("province"),))
    async with (
        platform_and_uplink(license="WRONG-LICENSE-0001") as (sim, uplink),
        run_dispatcher(journal, uplink, FAST),
    ):
        await journal.ingest([order_event(seed_order())])
        rows = await eventually(lambda: settled(journal, 1))
    [row] = rows.values()
    assert row["state"] == "dead" and "code -3" in row["last_error"]
    assert "License: not this platform's" in row["last_error"]
    assert "WRONG-LICENSE-0001" not in row["last_error"]
    assert sim.received.refused[0]["problems"] == ["License: not this platform's"]
