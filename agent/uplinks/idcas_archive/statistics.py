"""6.2, the daily recognition statistics, and 7.9 print flags: journaled events become outbox
messages. One statistics message per day (dedupe key `statistics:<day>`), due at the day's slot
(`at`, local, the next morning): made by HIS's counts, or by the slot itself (a task journals
each passed slot, so a day is caught up after downtime); a message without counts waits for
them (the counts HIS posts later are put into it)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from agent.events import Event
from agent.journal.transaction import Transaction, to_json
from agent.tasks import TaskContext
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.idcas_archive.uplink import PRINT_FLAG, STATISTICS

log = structlog.get_logger(__name__)
COUNTS = "idcas.counts"  # HIS posted a day's counts
RELAYED = "idcas.recognition_relayed"  # a recognition query (6.1) relayed: one visit
DUE = "idcas.statistics_due"  # a day's slot passed
NAMESPACE = uuid.UUID("5b0c1f0e-0d2a-4e43-9b7a-1d3c0a2f9e18")
MAX_SLEEP = 3600.0  # seconds: the clock is looked at again at least this often


def slot_of(config: IdcasArchiveConfig, day: date) -> datetime:
    """When `day`'s statistics are due: `at` on the next day, local time."""
    zone = ZoneInfo(config.timezone)
    return datetime.combine(day + timedelta(days=1), time.fromisoformat(config.statistics.at), zone)


class IdcasMessages:
    """The domain handler of one idcas_archive uplink: print flags and statistics to its outbox."""

    kinds = (PRINT_FLAG, COUNTS, DUE)

    def __init__(self, uplink: str, config: IdcasArchiveConfig) -> None:
        self.uplink = uplink
        self.config = config
        self.name = f"idcas:{uplink}"

    def handle(self, tx: Transaction, event: Event) -> None:
        """Queue the message an event asks for (the uplink's own events only)."""
        if event.payload.get("uplink") != self.uplink:
            return
        if event.kind == PRINT_FLAG:
            tx.enqueue(
                uplink=self.uplink,
                kind=PRINT_FLAG,
                order_key=f"print:{event.id}",
                dedupe_key=event.id,
                payload={"params": event.payload.get("params") or {}},
            )
            return
        day = date.fromisoformat(str(event.payload["day"]))
        stations = event.payload.get("work_stations", self.config.statistics.work_stations)
        payload: dict[str, Any] = {
            "day": day.isoformat(),
            "patients_cnt": event.payload.get("patients_cnt"),
            "work_stations": stations,
        }
        if event.kind == DUE and self.config.statistics.source == "relayed":
            payload["patients_cnt"] = relayed_visits(tx.conn, self.uplink, day)
        dedupe = f"statistics:{day.isoformat()}"
        if event.kind == COUNTS:
            # The day's slot passed before HIS posted: its message waits for these counts.
            waiting = tx.conn.execute(
                "UPDATE outbox SET payload = ?, next_attempt_at = ? WHERE uplink = ?"
                " AND dedupe_key = ? AND state IN ('pending', 'inflight')",
                (to_json(payload), tx.now, self.uplink, dedupe),
            )
            if waiting.rowcount:
                return
        tx.enqueue(
            uplink=self.uplink,
            kind=STATISTICS,
            order_key=dedupe,  # a day waiting for its counts holds back no other day
            dedupe_key=dedupe,  # one message a day, whoever asks first: the counts or the slot
            payload=payload,
            delay=max(0.0, slot_of(self.config, day).timestamp() - tx.now),
        )


def relayed_visits(conn: sqlite3.Connection, uplink: str, day: date) -> int:
    """Distinct visits whose recognition records this uplink relayed on `day` (local)."""
    since = (day - timedelta(days=1)).isoformat()  # received_at is UTC: the day starts before
    row = conn.execute(
        "SELECT COUNT(DISTINCT json_extract(payload, '$.visit')) FROM events"
        " WHERE received_at >= ? AND kind = ? AND json_extract(payload, '$.uplink') = ?"
        " AND json_extract(payload, '$.day') = ?",
        (since, RELAYED, uplink, day.isoformat()),
    ).fetchone()
    return int(row[0])


def relayed_event(uplink: str, visit_id: str, now: datetime) -> Event:
    """The event of one relayed recognition query: the day, the visit's digest (not its id)."""
    visit = hashlib.sha256(f"{uplink}:{visit_id}".encode()).hexdigest()[:32]
    return Event(RELAYED, "api", {"uplink": uplink, "day": now.date().isoformat(), "visit": visit})


def due_days(config: IdcasArchiveConfig, now: datetime) -> list[date]:
    """The days whose slot has passed, within catch_up_days back, oldest first."""
    local = now.astimezone(ZoneInfo(config.timezone))
    days = []
    for back in range(config.statistics.catch_up_days, 0, -1):
        day = local.date() - timedelta(days=back)
        if slot_of(config, day) <= local:
            days.append(day)
    return days


def seconds_to_next_slot(config: IdcasArchiveConfig, now: datetime) -> float:
    """Seconds from `now` to the next slot (today's, else tomorrow's)."""
    local = now.astimezone(ZoneInfo(config.timezone))
    today = slot_of(config, local.date() - timedelta(days=1))
    upcoming = today if local < today else slot_of(config, local.date())
    return (upcoming - local).total_seconds()


def due_event(uplink: str, day: date, now: datetime) -> Event:
    """The event of `day`'s passed slot: the same id whenever it is journaled."""
    event_id = str(uuid.uuid5(NAMESPACE, f"{uplink}:statistics:{day.isoformat()}"))
    return Event(
        DUE, uplink, {"uplink": uplink, "day": day.isoformat()}, occurred_at=now, id=event_id
    )


def statistics_task(uplink: str, config: IdcasArchiveConfig) -> Any:
    """The background job journaling each passed slot (the runtime supervises it)."""

    async def run(ctx: TaskContext) -> None:
        while True:
            now = datetime.now(ZoneInfo(config.timezone))
            for day in due_days(config, now):
                if await ctx.emit(due_event(uplink, day, now)):
                    log.info("idcas.statistics_due", uplink=uplink, day=day.isoformat())
            await asyncio.sleep(min(max(seconds_to_next_slot(config, now), 1.0), MAX_SLEEP))

    return run


def handlers(name: str, config: Any) -> list[Any]:
    """The handler an idcas_archive uplink needs."""
    assert isinstance(config, IdcasArchiveConfig)
    return [IdcasMessages(name, config)]


def tasks(name: str, config: Any) -> list[Any]:
    """The statistics job, when enabled."""
    assert isinstance(config, IdcasArchiveConfig)
    return [statistics_task(name, config)] if config.statistics.enabled else []
