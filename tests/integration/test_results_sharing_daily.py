"""Seed 001 公共3/公共5: the day's delivered records are reported, the platform's completeness
check is asked, and exactly what it lacks is sent again; when re-sending does not help, an
alert says so."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.uplinks.results_sharing.daily import DailyReconciler, due_days
from agent.uplinks.results_sharing.reconcile import Reconciliation
from agent.uplinks.results_sharing.uplink import ResultsSharingUplink
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_results_sharing import FAST, audited, settled, sharing, start_platform

ZONE = ZoneInfo("Asia/Shanghai")


class Context:
    """What the runtime gives a task: emit and query on the journal."""

    def __init__(self, journal: Journal, state_dir: Path) -> None:
        self.journal = journal
        self.state_dir = state_dir

    async def emit(self, event: Any) -> bool:
        return (await self.journal.ingest([event]))[0]

    async def query(self, fn: Any) -> Any:
        return await self.journal.run(fn)

    async def read(self, fn: Any) -> Any:
        return await self.journal.run(fn)  # these tasks read little: the writer is fine here


async def quick(seconds: float) -> None:
    await asyncio.sleep(0.01)  # the reconciler's pauses (recheck, settle polls), shortened


async def open_agent(open_journal: Any, max_resends: int) -> Journal:
    plans = {"sharing": UPLINKS["results_sharing"].plan}
    imaging = ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": ["sharing"]}, context={"uplink_plans": plans}
    )
    handlers = (ImagingHandler("imaging", imaging), Reconciliation("sharing", max_resends))
    journal: Journal = await open_journal.open(handlers=handlers)
    return journal


async def test_exactly_the_records_the_platform_lost_are_sent_again(open_journal, tmp_path):
    platform = await start_platform()
    journal = await open_agent(open_journal, max_resends=2)
    config = sharing(platform.base_url, tmp_path)
    platform.faults.lose_next = 2  # answered 200, kept nowhere
    try:
        async with run_dispatcher(journal, ResultsSharingUplink("sharing", config), FAST):
            for number in ("E1", "E2", "E3", "E4", "E5"):
                await journal.ingest([audited(number)])
            await eventually(lambda: settled(journal, 5))
            checker = ResultsSharingUplink("sharing", config)
            await checker.open()
            try:
                reconciler = DailyReconciler("sharing", config, sleep=quick)
                today = datetime.now(ZONE).date()
                state = await reconciler.reconcile_day(Context(journal, tmp_path), checker, today)
                again = await reconciler.reconcile_day(Context(journal, tmp_path), checker, today)
            finally:
                await checker.close()
            rows = await eventually(lambda: settled(journal, 8))
    finally:
        await platform.stop()
    assert state == again == "complete"
    lost = sorted(body["examNo"] for _, body in platform.received.lost)
    assert len(lost) == 2
    indexes = [b["examNo"] for n, b in platform.received.uploads if n == "uploadExamIndex"]
    assert sorted(indexes[-2:]) == lost and len(indexes) == 5  # 3 kept at once, 2 sent again
    assert sorted(platform.received.records["uploadExamIndex"]) == [
        f"XC0001|E{n}" for n in range(1, 6)
    ]
    assert [len(c["missing"]) for c in platform.received.checks] == [2, 0]
    report = next(b for n, b in platform.received.uploads if n == "uploadDailyReport")
    assert report["items"] == [{"interface": "uploadExamIndex", "count": 5}]
    resent = [r for r in rows if ":resend:" in r["dedupe_key"]]
    assert len(resent) == 2 and {r["state"] for r in rows} == {"delivered"}
    (day,) = await journal.run(lambda c: c.execute("SELECT state, checks FROM rs_daily").fetchall())
    assert day == ("complete", 2)


async def test_a_platform_that_keeps_losing_raises_one_alert(open_journal, tmp_path):
    platform = await start_platform()
    journal = await open_agent(open_journal, max_resends=1)
    config = sharing(platform.base_url, tmp_path, daily_max_resends=1)
    platform.faults.lose_next = 1000
    try:
        async with run_dispatcher(journal, ResultsSharingUplink("sharing", config), FAST):
            await journal.ingest([audited("E7")])
            await eventually(lambda: settled(journal, 1))
            checker = ResultsSharingUplink("sharing", config)
            await checker.open()
            try:
                reconciler = DailyReconciler("sharing", config, sleep=quick)
                today = datetime.now(ZONE).date()
                state = await reconciler.reconcile_day(Context(journal, tmp_path), checker, today)
            finally:
                await checker.close()
    finally:
        await platform.stop()
    assert state == "unreconciled"
    alerts = await journal.run(
        lambda c: c.execute("SELECT code, severity, message FROM alerts").fetchall()
    )
    assert [(code, severity) for code, severity, _ in alerts] == [
        ("results_sharing_unreconciled", "error")
    ]
    assert "1 records delivered on" in alerts[0][2] and "E7" not in alerts[0][2]
    sent = [b["examNo"] for n, b in platform.received.lost if n == "uploadExamIndex"]
    assert sent == ["E7", "E7"]  # once, then the one re-send allowed
    rows = await outbox_rows(journal)
    assert sum(":resend:" in key for key in rows) == 1
    assert json.loads(json.dumps(platform.received.checks))[-1]["missing"]


def test_the_days_due_are_yesterday_once_the_report_time_passed():
    at = time(1, 0)
    before = datetime(2026, 12, 7, 0, 30, tzinfo=ZONE)
    after = datetime(2026, 12, 7, 1, 0, tzinfo=ZONE)
    assert [d.isoformat() for d in due_days(before, at, 2)] == ["2026-12-04", "2026-12-05"]
    assert [d.isoformat() for d in due_days(after, at, 2)] == ["2026-12-05", "2026-12-06"]
