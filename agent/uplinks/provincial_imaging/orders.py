"""Seed 003 §3.4 in the journal: a HIS order becomes an outbox message (one order key per
ApplyNo, so INSERT, UPDATE and DELETE go in order) and the platform's exam status is kept beside
it in `pi_orders`, where the local API reads both."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from agent.events import Event
from agent.journal.retention import Purge, Walk
from agent.journal.transaction import Transaction
from agent.uplinks.provincial_imaging.config import ProvincialImagingConfig
from agent.uplinks.provincial_imaging.uplink import APPLY_KIND

ORDER = "provincial.order"  # HIS posted an apply form action (payload: uplink, apply_no, order)
STATUS = "provincial.status"  # the platform called SynStatusInfo (payload: uplink, apply_no, …)
EXAM_STATUSES = {"00": "检查取消", "20": "检查确认", "50": "收到影像", "70": "确认报告"}
_COLUMNS = (
    "apply_no", "action", "posted_at", "exam_status", "exam_status_name", "exam_no",
    "image_url", "operated_at", "status_at",
)  # fmt: skip


class ProvincialOrders:
    """The handler of one provincial_imaging uplink: its orders to the outbox, statuses kept."""

    kinds = (ORDER, STATUS)

    def __init__(self, uplink: str) -> None:
        self.uplink = uplink
        self.name = f"provincial:{uplink}"

    def handle(self, tx: Transaction, event: Event) -> None:
        """Queue an order's SynApplyInfo, or keep a reported status (this uplink's events only)."""
        payload = event.payload
        if payload.get("uplink") != self.uplink:
            return
        apply_no = str(payload["apply_no"])
        if event.kind == ORDER:
            tx.conn.execute(
                "INSERT INTO pi_orders (uplink, apply_no, action, event_id, posted_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (uplink, apply_no) DO UPDATE SET"
                " action = excluded.action, event_id = excluded.event_id,"
                " posted_at = excluded.posted_at",
                (self.uplink, apply_no, payload["order"]["Action"], event.id, tx.now),
            )
            tx.enqueue(
                uplink=self.uplink,
                kind=APPLY_KIND,
                order_key=f"apply:{apply_no}",
                dedupe_key=event.id,
                payload={"order": payload["order"]},
            )
            return
        tx.conn.execute(
            "INSERT INTO pi_orders (uplink, apply_no, exam_status, exam_status_name, exam_no,"
            " image_url, operated_at, status_event_id, status_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (uplink, apply_no) DO UPDATE SET exam_status = excluded.exam_status,"
            " exam_status_name = excluded.exam_status_name, exam_no = excluded.exam_no,"
            " image_url = excluded.image_url, operated_at = excluded.operated_at,"
            " status_event_id = excluded.status_event_id, status_at = excluded.status_at",
            (
                self.uplink,
                apply_no,
                payload.get("status"),
                payload.get("status_name"),
                payload.get("exam_no"),
                payload.get("image_url"),
                payload.get("operated_at"),
                event.id,
                tx.now,
            ),
        )


def find_orders(
    conn: sqlite3.Connection, uplink: str, apply_no: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Orders of `uplink` (one, or the newest `limit`) with their delivery and platform status."""
    where, args = "o.uplink = ?", [uplink]
    if apply_no is not None:
        where += " AND o.apply_no = ?"
        args.append(apply_no)
    rows = conn.execute(
        f"SELECT {', '.join('o.' + c for c in _COLUMNS)}, m.state, m.last_error, m.attempts"
        " FROM pi_orders o LEFT JOIN outbox m ON m.uplink = o.uplink AND m.dedupe_key = o.event_id"
        f" WHERE {where} ORDER BY COALESCE(o.posted_at, o.status_at) DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    found = []
    for row in rows:
        item = dict(zip(_COLUMNS, row[: len(_COLUMNS)], strict=True))
        state, error, attempts = row[len(_COLUMNS) :]
        item["delivery"] = {"state": state, "last_error": error, "attempts": attempts}
        found.append(item)
    return found


def handlers(name: str, config: Any) -> list[Any]:
    """The handler a provincial_imaging uplink needs."""
    assert isinstance(config, ProvincialImagingConfig)
    return [ProvincialOrders(name)]


def order_purges() -> dict[str, Callable[[], Purge]]:
    """The orders' rows, kept as long as the journal keeps the messages they were posted by
    (`[journal] retention_days` after they last changed), never while that message is open."""
    keep = (
        "EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = pi_orders.event_id"
        " AND o.state IN ('pending', 'inflight', 'dead'))"
    )
    return {
        "provincial_imaging.orders": lambda: Walk(
            "pi_orders", "MAX(COALESCE(posted_at, 0), COALESCE(status_at, 0))", keep, seconds=True
        )
    }
