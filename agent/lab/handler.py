"""The lab domain's handler: store what the LIS and HIS post, queue each uplink's share (pure)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC
from typing import Any

from agent.events import Event
from agent.journal.transaction import Transaction
from agent.lab.config import LabConfig, Offer

REPORT = "lab.report"
FILES = "lab.files"
DEVICE = "lab.device"
QC = "lab.qc"
RECOGNITION = "sharing.recognition"
VIEWING = "sharing.viewing"
CATALOGUE = "lab.catalogue"
# Event kind -> (lab_records kind, the record's id key, its time key, offer, message kind).
RECORDS = {
    DEVICE: ("device", "device_code", "", Offer.DEVICES, "lab.device"),
    QC: ("qc", "run_id", "run_at", Offer.QC, "lab.qc"),
    RECOGNITION: ("recognition", "record_id", "decided_at", Offer.RECOGNITIONS, ""),
    VIEWING: ("viewing", "record_id", "at", Offer.VIEWINGS, "sharing.viewing"),
}


def digest(value: object) -> str:
    """A short SHA-256 of a record's canonical JSON."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _iso(moment: str | None) -> str | None:
    """A posted local time ("YYYY-MM-DD HH:MM:SS") as the domain keeps it (ISO 8601)."""
    return moment.replace(" ", "T", 1) if moment else None


class LabHandler:
    """Handles lab reports, their PDFs, devices, QC runs, recognition and viewing records, and
    the item catalogue."""

    kinds = (REPORT, FILES, DEVICE, QC, RECOGNITION, VIEWING, CATALOGUE)

    def __init__(self, name: str, config: LabConfig) -> None:
        self.name = name
        self.config = config

    def handle(self, tx: Transaction, event: Event) -> None:
        """Store one posted record and queue what it makes due."""
        at = event.received_at.astimezone(UTC).isoformat(timespec="microseconds")
        if event.kind == REPORT:
            self._report(tx, dict(event.payload), at, event.id)
        elif event.kind == FILES:
            number = str(event.payload["report_no"])
            tx.conn.executemany(
                "INSERT OR IGNORE INTO lab_files (report_no, name, size, attached_at, event_id)"
                " VALUES (?, ?, ?, ?, ?)",
                [(number, f["name"], int(f["size"]), at, event.id) for f in event.payload["files"]],
            )
            self._files(tx, number)
        elif event.kind == CATALOGUE:
            self._catalogue(tx, list(event.payload["items"]))
        elif event.kind in RECORDS:
            self._record(tx, event.kind, dict(event.payload), at, event.id)

    def _wanting(self, offer: Offer) -> list[str]:
        return [u for u, offers in self.config.plans().items() if offer in offers]

    def _report(self, tx: Transaction, report: dict[str, Any], at: str, event_id: str) -> None:
        for key in ("sampled_at", "received_at", "reported_at", "audited_at"):
            if report.get(key):
                report[key] = _iso(report[key])
        number, made = str(report["report_no"]), digest(report)
        old = tx.conn.execute(
            "SELECT digest FROM lab_reports WHERE report_no = ?", (number,)
        ).fetchone()
        tx.conn.execute(
            "INSERT INTO lab_reports (report_no, patient_id, reported_at, audited_at, record,"
            " digest, updated_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (report_no) DO UPDATE SET patient_id = excluded.patient_id,"
            " reported_at = excluded.reported_at, audited_at = excluded.audited_at,"
            " record = excluded.record, digest = excluded.digest,"
            " updated_at = excluded.updated_at, event_id = excluded.event_id",
            (
                number,
                report["patient"]["id"],
                report["reported_at"],
                report.get("audited_at"),
                json.dumps(report, ensure_ascii=False, sort_keys=True),
                made,
                at,
                event_id,
            ),
        )
        if not report.get("audited_at") or (old is not None and old[0] == made):
            return  # not audited, or posted again unchanged
        coded = {**report, "results": _coded(tx.conn, "lab", report["results"])}
        for uplink in self._wanting(Offer.REPORTS):
            for kind in ("lab.report", "lab.results"):
                tx.enqueue(
                    uplink=uplink,
                    kind=kind,
                    order_key=f"lab:{number}",
                    dedupe_key=f"{kind}:{number}:{made}",
                    payload={"record": coded},
                )
        self._files(tx, number)

    def _files(self, tx: Transaction, number: str) -> None:
        """Queue each PDF of an audited report, after the report (same order key)."""
        row = tx.conn.execute(
            "SELECT record FROM lab_reports WHERE report_no = ? AND audited_at IS NOT NULL",
            (number,),
        ).fetchone()
        if row is None:
            return  # its audit queues the files
        record = json.loads(row[0])
        files = tx.conn.execute(
            "SELECT name, size FROM lab_files WHERE report_no = ? ORDER BY rowid", (number,)
        ).fetchall()
        for uplink in self._wanting(Offer.FILES):
            for name, size in files:
                tx.enqueue(
                    uplink=uplink,
                    kind="lab.pdf",
                    order_key=f"lab:{number}",
                    dedupe_key=f"lab.pdf:{number}:{name}",
                    payload={"record": record, "file": {"name": name, "size": size}},
                )

    def _record(
        self, tx: Transaction, event_kind: str, record: dict[str, Any], at: str, event_id: str
    ) -> None:
        kind, id_key, time_key, offer, message = RECORDS[event_kind]
        for key in ("run_at", "decided_at", "at"):
            if isinstance(record.get(key), str):
                record[key] = _iso(record[key])
        record_id, made = str(record[id_key]), digest(record)
        old = tx.conn.execute(
            "SELECT digest FROM lab_records WHERE kind = ? AND record_id = ?", (kind, record_id)
        ).fetchone()
        tx.conn.execute(
            "INSERT INTO lab_records (kind, record_id, at, record, digest, updated_at, event_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, record_id) DO UPDATE SET"
            " at = excluded.at, record = excluded.record, digest = excluded.digest,"
            " updated_at = excluded.updated_at, event_id = excluded.event_id",
            (
                kind,
                record_id,
                record.get(time_key) if time_key else None,
                json.dumps(record, ensure_ascii=False, sort_keys=True),
                made,
                at,
                event_id,
            ),
        )
        if old is not None and old[0] == made:
            return
        message = message or f"{record['domain']}.recognition"
        for uplink in self._wanting(offer):
            tx.enqueue(
                uplink=uplink,
                kind=message,
                order_key=f"{kind}:{record_id}",
                dedupe_key=f"{message}:{record_id}:{made}",
                payload={"record": record},
            )

    def _catalogue(self, tx: Transaction, items: list[dict[str, Any]]) -> None:
        conn = tx.conn
        before = _catalogue_rows(conn)
        conn.execute("DELETE FROM lab_catalogue")
        conn.executemany(
            "INSERT INTO lab_catalogue (domain, local_code, local_name, platform_code,"
            " platform_name) VALUES (:domain, :local_code, :local_name, :platform_code,"
            " :platform_name)",
            items,
        )
        after = _catalogue_rows(conn)
        if after == before:
            return
        made = digest(after)
        for uplink in self._wanting(Offer.ITEM_CODES):
            tx.enqueue(
                uplink=uplink,
                kind="item.codes",
                order_key="item-codes",
                dedupe_key=f"item.codes:{made}",
                payload={"record": {"items": after}},
            )


def _catalogue_rows(conn: sqlite3.Connection) -> list[dict[str, str]]:
    cursor = conn.execute(
        "SELECT domain, local_code, local_name, platform_code, platform_name FROM lab_catalogue"
        " ORDER BY domain, local_code"
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _coded(
    conn: sqlite3.Connection, domain: str, results: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The results, each with the catalogue's platform code and name where it has the item."""
    codes = {
        code: (platform, name)
        for code, platform, name in conn.execute(
            "SELECT local_code, platform_code, platform_name FROM lab_catalogue WHERE domain = ?",
            (domain,),
        )
    }
    coded = []
    for result in results:
        found = codes.get(result["item_code"])
        extra = {"platform_code": found[0], "platform_name": found[1]} if found else {}
        coded.append({**result, **extra})
    return coded
