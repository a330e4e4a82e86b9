"""The daily report and completeness check (seed 001 公共3, 公共5): every day at
daily_report_time, for the previous day, the records this uplink delivered that day are counted
and reported (a queued message), then the platform is asked which of them it lacks; those are
queued again and the platform asked again, until it lacks nothing or max_resends is spent."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from agent.dispatch.outcomes import Delivered
from agent.events import Event, utcnow
from agent.tasks import TaskContext
from agent.uplinks.kit.fieldmap import apply
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.mapping import answer_path
from agent.uplinks.results_sharing.reconcile import (
    CHECKED,
    DAILY_REPORT,
    REPORTED,
    Reconciliation,
    resend_marker,
)
from agent.uplinks.results_sharing.uplink import FILE_KINDS, MAPS, ResultsSharingUplink
from agent.uplinks.results_sharing.view import exam_view

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("0f3c5a51-2d1e-4f7b-9a63-5b0e8d1c7a24")  # deterministic event ids
RETRY_SECONDS = 60.0  # a check the platform did not answer is asked again after this
SETTLE_POLL = 2.0  # how often re-sent messages are looked at before asking again


@dataclass(frozen=True, slots=True)
class Sent:
    """A record delivered on the day: its outbox id, interface (endpoint) and platform key."""

    message_id: int
    interface: str
    key: str


def record_key(uplink: ResultsSharingUplink, kind: str, payload: dict[str, Any]) -> Sent | None:
    """The endpoint and key (its `key` fields joined by "|") a message was sent as; None for a
    kind without a map."""
    name = MAPS.get(kind, kind)
    if name not in uplink.mapping.maps:
        return None
    view = exam_view(payload, {"code": uplink.config.org_code, "name": uplink.config.org_name},
                     uplink.config.links())  # fmt: skip
    if kind in FILE_KINDS:
        file = payload.get("file") or {}
        file_name = str(file.get("name") or "")
        view["file"] = {"name": file_name, "size": file.get("size"),
                        "sha256": file_name.split(".", 1)[0]}  # fmt: skip
    fields, _ = apply(uplink.mapping.maps[name], view, uplink.mapping.platform.formats)
    endpoint_name, endpoint = uplink.mapping.endpoint_of(name)
    key = "|".join(str(fields.get(k, "")) for k in endpoint.key)
    return Sent(0, endpoint_name, key)


def delivered_on(
    conn: sqlite3.Connection, uplink: str, start: float, end: float
) -> list[tuple[int, str, str]]:
    """(id, kind, payload) of the messages delivered to `uplink` in [start, end) (unix s)."""
    return list(
        conn.execute(
            "SELECT id, kind, payload FROM outbox WHERE uplink = ? AND state = 'delivered'"
            " AND settled_at >= ? AND settled_at < ? AND kind != ? ORDER BY id",
            (uplink, start, end, DAILY_REPORT),
        )
    )


def day_state(conn: sqlite3.Connection, uplink: str, day: str) -> tuple[str, int] | None:
    """(state, checks) of a day's reconciliation, None before its report."""
    row = conn.execute(
        "SELECT state, checks FROM rs_daily WHERE uplink = ? AND day = ?", (uplink, day)
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def resends_open(conn: sqlite3.Connection, uplink: str, day: str) -> int:
    """Messages re-sent for `day` not yet delivered or dead."""
    row = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE uplink = ? AND state IN ('pending', 'inflight')"
        " AND dedupe_key LIKE ?",
        (uplink, f"%{resend_marker(day)}%"),
    ).fetchone()
    return int(row[0])


def due_days(now: datetime, report_at: time, catch_up: int) -> list[date]:
    """The days to reconcile at local time `now`, oldest first: up to yesterday once
    report_at has passed today, else up to the day before."""
    last = now.date() - timedelta(days=1 if now.time() >= report_at else 2)
    return [last - timedelta(days=n) for n in reversed(range(catch_up))]


class DailyReconciler:
    """The uplink's background task: report, check, re-send, for each due day."""

    def __init__(
        self,
        name: str,
        config: ResultsSharingConfig,
        *,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.now = now
        self.sleep = sleep
        hour, minute = config.daily_report_time.split(":")
        self.report_at = time(int(hour), int(minute))

    async def run(self, ctx: TaskContext) -> None:
        """Reconcile every due day, then wait for the next report time; forever."""
        uplink = ResultsSharingUplink(self.name, self.config)
        await uplink.open()
        try:
            while True:
                local = self.now().astimezone(self.zone)
                for day in due_days(local, self.report_at, self.config.daily_catch_up_days):
                    await self.reconcile_day(ctx, uplink, day)
                await self.sleep(self._until_next(local))
        finally:
            await uplink.close()

    def _until_next(self, local: datetime) -> float:
        target = datetime.combine(local.date(), self.report_at, self.zone)
        if target <= local:
            target += timedelta(days=1)
        return max(1.0, (target - local).total_seconds())

    async def reconcile_day(self, ctx: TaskContext, uplink: ResultsSharingUplink, day: date) -> str:
        """Report and check one day until settled; its final state (or "empty")."""
        text = day.isoformat()
        state = await ctx.query(partial(day_state, uplink=self.name, day=text))
        if state is not None and state[0] in ("complete", "unreconciled"):
            return state[0]
        start = datetime.combine(day, time(0), self.zone).timestamp()
        rows = await ctx.query(
            partial(delivered_on, uplink=self.name, start=start, end=start + 86400.0)
        )
        sent = self._keys(uplink, rows)
        if state is None:
            if not sent:
                return "empty"  # nothing delivered that day: nothing to report (documented)
            counts: dict[str, int] = {}
            for item in sent.values():
                counts[item.interface] = counts.get(item.interface, 0) + 1
            payload = {
                "uplink": self.name,
                "day": text,
                "records": len(sent),
                "counts": [{"interface": i, "count": n} for i, n in sorted(counts.items())],
            }
            await ctx.emit(self._event(REPORTED, payload, text, "report"))
            state = ("reported", 0)
        checks = state[1]
        while True:
            while await ctx.query(partial(resends_open, uplink=self.name, day=text)):
                await self.sleep(SETTLE_POLL)
            records = [{"interface": s.interface, "key": s.key} for s in sent.values()]
            outcome, answer = await uplink.ask("daily.check", {"date": text, "records": records})
            if not isinstance(outcome, Delivered):
                log.warning("results_sharing.check_failed", uplink=self.name, day=text,
                            reason=getattr(outcome, "reason", ""))  # fmt: skip
                await self.sleep(RETRY_SECONDS)
                continue
            lacking = self._lacking(answer)
            ids = [s.message_id for s in sent.values() if (s.interface, s.key) in lacking]
            checks += 1
            payload = {"uplink": self.name, "day": text, "check": checks, "missing_ids": ids}
            await ctx.emit(self._event(CHECKED, payload, text, str(checks)))
            log.info("results_sharing.checked", uplink=self.name, day=text, missing=len(ids))
            if not ids:
                return "complete"
            if checks > self.config.daily_max_resends:
                return "unreconciled"
            await self.sleep(self.config.daily_recheck_after)

    def _keys(
        self, uplink: ResultsSharingUplink, rows: list[tuple[int, str, str]]
    ) -> dict[tuple[str, str], Sent]:
        """Each record of the day once (the last delivery of a key speaks for it)."""
        sent: dict[tuple[str, str], Sent] = {}
        for message_id, kind, payload in rows:
            found = record_key(uplink, kind, json.loads(payload))
            if found is not None:
                sent[(found.interface, found.key)] = Sent(message_id, found.interface, found.key)
        return sent

    def _lacking(self, answer: Any) -> set[tuple[str, str]]:
        daily = self.config.mapping.platform.daily
        listed = answer_path(answer, daily.missing if daily else "data.missing")
        if not isinstance(listed, list):
            return set()
        return {
            (str(item.get("interface")), str(item.get("key")))
            for item in listed
            if isinstance(item, dict)
        }

    def _event(self, kind: str, payload: dict[str, Any], day: str, step: str) -> Event:
        ident = uuid.uuid5(NAMESPACE, f"{self.name}:{day}:{kind}:{step}")
        return Event(kind, f"uplink:{self.name}", payload, id=str(ident))


def tasks(name: str, config: Any) -> list[Callable[[Any], Awaitable[None]]]:
    """The daily reconciliation, when configured and the mapping has a [daily] table."""
    assert isinstance(config, ResultsSharingConfig)
    if not config.daily_report or config.mapping.platform.daily is None:
        return []
    offset = timedelta(seconds=config.daily_clock_offset)
    return [DailyReconciler(name, config, now=lambda: utcnow() + offset).run]


def handlers(name: str, config: Any) -> list[Reconciliation]:
    """The journal side of the reconciliation."""
    assert isinstance(config, ResultsSharingConfig)
    return [Reconciliation(name, config.daily_max_resends)]
