"""The journal side of the daily reconciliation (pure, in the ingest transaction): the daily
report queued, the platform's completeness answers recorded, what it lacks queued again, and
an alert when re-sending does not help."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from agent.events import Event
from agent.journal.alerts import Alert
from agent.journal.transaction import Transaction

REPORTED = "results_sharing.daily_reported"
CHECKED = "results_sharing.daily_checked"
DAILY_REPORT = "daily.report"
UNRECONCILED_ALERT = "results_sharing_unreconciled"


def resend_marker(day: str) -> str:
    """What the dedupe key of a message re-sent for `day` contains."""
    return f":resend:{day}:"


class Reconciliation:
    """Handles one results_sharing uplink's daily events (others' are left alone)."""

    kinds = (REPORTED, CHECKED)

    def __init__(self, uplink: str, max_resends: int) -> None:
        self.name = f"reconcile:{uplink}"
        self.uplink = uplink
        self.max_resends = max_resends

    def handle(self, tx: Transaction, event: Event) -> None:
        """Queue the daily report, or act on a completeness answer."""
        payload = event.payload
        if payload.get("uplink") != self.uplink:
            return
        at = event.received_at.astimezone(UTC).isoformat(timespec="seconds")
        day = str(payload["day"])
        if event.kind == REPORTED:
            self._reported(tx, day, payload, at)
        else:
            self._checked(tx, day, list(payload["missing_ids"]), int(payload["check"]), at)

    def _reported(self, tx: Transaction, day: str, payload: dict[str, Any], at: str) -> None:
        tx.conn.execute(
            "INSERT OR IGNORE INTO rs_daily (uplink, day, state, records, updated_at)"
            " VALUES (?, ?, 'reported', ?, ?)",
            (self.uplink, day, int(payload["records"]), at),
        )
        tx.enqueue(
            uplink=self.uplink,
            kind=DAILY_REPORT,
            order_key="daily",
            dedupe_key=f"{DAILY_REPORT}:{day}",
            payload={"record": {"date": day, "counts": payload["counts"]}},
        )

    def _checked(self, tx: Transaction, day: str, ids: list[int], check: int, at: str) -> None:
        conn = tx.conn
        row = conn.execute(
            "SELECT checks, state FROM rs_daily WHERE uplink = ? AND day = ?", (self.uplink, day)
        ).fetchone()
        if row is None or row[0] >= check or row[1] in ("complete", "unreconciled"):
            return  # an answer already acted on (a replay)
        if not ids:
            state = "complete"
        elif check > self.max_resends:
            state = "unreconciled"
            tx.raise_alert(
                Alert(
                    code=UNRECONCILED_ALERT,
                    subject=f"uplink:{self.uplink}",
                    message=f"{len(ids)} records delivered on {day} are still missing at the"
                    f" platform after {self.max_resends} re-sends; see `edge-agent outbox`"
                    " and ask the platform",
                    origin=f"reconcile:{self.uplink}:{day}",
                    severity="error",
                )
            )
        else:
            state = "resent"
            self._resend(tx, day, ids, check)
        conn.execute(
            "UPDATE rs_daily SET state = ?, checks = ?, missing = ?, updated_at = ?"
            " WHERE uplink = ? AND day = ?",
            (state, check, len(ids), at, self.uplink, day),
        )

    def _resend(self, tx: Transaction, day: str, ids: list[int], check: int) -> None:
        marks = ",".join("?" * len(ids))
        rows = tx.conn.execute(
            f"SELECT kind, order_key, dedupe_key, payload FROM outbox"
            f" WHERE uplink = ? AND id IN ({marks}) ORDER BY id",
            (self.uplink, *ids),
        ).fetchall()
        for kind, order_key, dedupe_key, payload in rows:
            original = str(dedupe_key).split(":resend:", 1)[0]
            tx.enqueue(
                uplink=self.uplink,
                kind=kind,
                order_key=order_key,
                dedupe_key=f"{original}{resend_marker(day)}{check}",
                payload=json.loads(payload),
            )
