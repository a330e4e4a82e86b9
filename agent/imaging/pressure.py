"""The journal side of the spool's keeper: disk pressure levels recorded, alerted and cleared;
proposed purges checked again and marked (pure SQL, in the ingest transaction)."""

from __future__ import annotations

from typing import Any

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.plans import Offer
from agent.imaging.retention import Policy, mark_purged
from agent.journal.alerts import Alert, acknowledge
from agent.journal.transaction import Transaction

CODES = {"warning": "disk_space_warning", "critical": "disk_space_critical"}
CLEARED_BY = "edge-agent"  # who acknowledges a pressure alert when the free space came back


def apply_pressure(tx: Transaction, event: Event) -> None:
    """Record the new level; raise the alerts it reaches (warning before critical) and clear,
    by acknowledging them, those it fell below; publish the level to the health followers."""
    p = event.payload
    level, free = str(p["level"]), int(p["free_mb"])
    warning, critical = int(p["warning_free_mb"]), int(p["critical_free_mb"])
    tx.conn.execute(
        "INSERT INTO disk_pressure (id, level, free_mb, warning_free_mb, critical_free_mb,"
        " changed_at) VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " level = excluded.level, free_mb = excluded.free_mb,"
        " warning_free_mb = excluded.warning_free_mb,"
        " critical_free_mb = excluded.critical_free_mb, changed_at = excluded.changed_at",
        (level, free, warning, critical, tx.at),
    )
    reached = {"ok": (), "warning": ("warning",), "critical": ("warning", "critical")}[level]
    for severity, code in CODES.items():
        if severity in reached:
            if not _open(tx, code):
                threshold = warning if severity == "warning" else critical
                tx.raise_alert(
                    Alert(
                        code=code,
                        subject="disk:spool",
                        message=f"{free} MiB free on the spool's disk, below {threshold} MiB"
                        + (": delivered images are purged early" if severity == "critical" else ""),
                        origin=f"disk:{event.id}",
                        severity="critical" if severity == "critical" else "warning",
                    )
                )
        else:
            for (alert_id,) in tx.conn.execute(
                "SELECT id FROM alerts WHERE code = ? AND acknowledged_at IS NULL", (code,)
            ).fetchall():
                acknowledge(tx.conn, alert_id, CLEARED_BY, f"cleared: {free} MiB free", tx.at)
    tx.publish("health", "disk", {"disk": level, "free_mb": free, "topic_suffix": "disk"})


def _open(tx: Transaction, code: str) -> bool:
    row = tx.conn.execute(
        "SELECT 1 FROM alerts WHERE code = ? AND acknowledged_at IS NULL LIMIT 1", (code,)
    ).fetchone()
    return row is not None


def apply_purge(tx: Transaction, event: Event, config: ImagingConfig) -> list[tuple[str, str]]:
    """Mark purged the proposed images the policy still lets go; those marked."""
    p: dict[str, Any] = event.payload
    policy = Policy(
        image_uplinks=frozenset(u for u, o in config.plans().items() if Offer.IMAGES in o),
        received_before=str(p["received_before"]),
        delivered_before=float(p["delivered_before"]),
        pull_before=str(p["pull_before"]),
    )
    at = event.received_at.isoformat(timespec="microseconds")
    return mark_purged(tx.conn, p["images"], policy, at)
