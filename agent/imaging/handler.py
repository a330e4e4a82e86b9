"""The imaging domain's handler: index instances and exams, mark studies stable, plan forwarding."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.events import Event
from agent.imaging.apply_forms import apply_no_for, save_forms
from agent.imaging.config import ImagingConfig
from agent.imaging.deletions import delete_images, offer_deletion, reject_instances
from agent.imaging.exams import attach_files, save_exam
from agent.imaging.forwarding import forward, push_without_images, report_audited, report_files
from agent.imaging.index import add_instance
from agent.imaging.plans import Offer
from agent.imaging.pressure import apply_pressure, apply_purge
from agent.imaging.retention import PRESSURE, PURGE
from agent.imaging.statistics import counts, days_to_report
from agent.journal.alerts import Alert
from agent.journal.transaction import Transaction

STORED = "dicom.stored"
EXAM = "imaging.exam"
EXAM_FILE = "imaging.exam_files"
DELETION = "imaging.deletion"
STABLE = "imaging.study_stable"
STATISTICS_DUE = "imaging.statistics_due"
APPLY_FORMS = "imaging.apply_forms"
REJECTED = "dicom.rejected"
STATISTICS = "exam.statistics"
DISK_REASONS = frozenset({"disk_full", "disk_low", "out_of_space"})
JOIN_KEYS = ("study_uid", "accession")  # event-only keys beside the exam document
REASON_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
AE_TITLE = re.compile(r"[ -~]{1,16}")


def utc_text(moment: datetime) -> str:
    """The index's time format: ISO 8601 UTC with microseconds (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class ImagingHandler:
    """Handles received instances, exams and their files, deletions, stability, statistics slots,
    DICOM rejections, disk pressure and purges."""

    kinds = (
        STORED,
        EXAM,
        EXAM_FILE,
        DELETION,
        STABLE,
        STATISTICS_DUE,
        REJECTED,
        APPLY_FORMS,
        PRESSURE,
        PURGE,
    )

    def __init__(self, name: str, config: ImagingConfig) -> None:
        self.name = name
        self.config = config

    def handle(self, tx: Transaction, event: Event) -> None:
        """Apply one event to the study index and queue what it makes due."""
        if event.kind == STORED:
            self._stored(tx, event)
        elif event.kind == EXAM:
            self._exam(tx, event)
        elif event.kind == EXAM_FILE:
            payload = event.payload
            at = utc_text(event.received_at)
            attach_files(tx.conn, str(payload["exam_no"]), payload["files"], at, event.id)
            row = tx.conn.execute(
                "SELECT study_uid FROM im_exams WHERE exam_no = ?", (str(payload["exam_no"]),)
            ).fetchone()
            if row is not None and row[0]:  # report images follow the push, if the study is due
                forward(tx, row[0], self.config.plans(), at, self.config.push_from_status)
            report_files(tx, str(payload["exam_no"]), self.config.plans())
        elif event.kind == DELETION:
            self._deletion(tx, event)
        elif event.kind == STABLE:
            self._stable(tx, event)
        elif event.kind == STATISTICS_DUE:
            self._statistics(tx, event.payload)
        elif event.kind == REJECTED:
            tx.raise_alert(rejected_alert(event))
        elif event.kind == APPLY_FORMS:
            save_forms(tx.conn, event.payload["forms"], utc_text(event.received_at), event.id)
        elif event.kind == PRESSURE:
            apply_pressure(tx, event)
        elif event.kind == PURGE:
            apply_purge(tx, event, self.config)

    def _stored(self, tx: Transaction, event: Event) -> None:
        payload = event.payload
        # The agent's clock, not the device's: stability is measured against it.
        at = utc_text(event.received_at)
        outcome = add_instance(
            tx.conn, payload, event_id=event.id, at=at, duplicates=self.config.duplicates
        )
        study_uid = str(payload["study_uid"])
        if outcome == "kept_first":
            tx.raise_alert(
                Alert(
                    code="dicom_duplicate_kept_first",
                    subject=f"study:{study_uid}",
                    message="instances received again were not indexed (duplicates ="
                    " keep_first); their later copies stay in the spool unused",
                    origin=f"duplicates:{study_uid}",
                    severity="warning",
                )
            )
            return
        if payload.get("rejected"):  # an IOCM rejection note (KOS): PACS withdrew images
            self._rejected(tx, event)
        accession = str(payload.get("accession_number") or "")
        if accession:  # an exam posted before its images: join it now
            tx.conn.execute(
                "UPDATE im_exams SET study_uid = ? WHERE study_uid IS NULL AND accession = ?",
                (study_uid, accession),
            )

    def _exam(self, tx: Transaction, event: Event) -> None:
        conn, payload = tx.conn, event.payload
        exam = {k: v for k, v in payload.items() if k not in JOIN_KEYS}
        info = exam.get("examInfo")
        if isinstance(info, dict) and not info.get("applyNo"):
            found = apply_no_for(conn, exam)
            if found is not None:  # 基卫's form of this patient and kind
                exam["examInfo"] = {**info, "applyNo": found}
        accession = str(payload.get("accession") or exam.get("accessionNo") or "")
        study_uid = str(payload.get("study_uid") or exam.get("studyUID") or "")
        if not study_uid and accession:
            row = conn.execute(
                "SELECT study_uid FROM im_studies WHERE accession = ?"
                " ORDER BY first_received DESC LIMIT 1",
                (accession,),
            ).fetchone()
            study_uid = row[0] if row else ""
        saved = save_exam(
            conn,
            exam,
            accession=accession,
            study_uid=study_uid or None,
            received=event.received_at.astimezone(ZoneInfo(self.config.timezone)),
            event_id=event.id,
            updated_at=utc_text(event.received_at),
        )
        at, plans = utc_text(event.received_at), self.config.plans()
        in_spool = (
            saved.study_uid is not None
            and conn.execute(
                "SELECT 1 FROM im_studies WHERE study_uid = ?", (saved.study_uid,)
            ).fetchone()
        )
        if in_spool:
            forward(tx, str(saved.study_uid), plans, at, self.config.push_from_status)
        elif saved.record.get("status") == "final":  # its images are elsewhere, or none
            push_without_images(tx, saved, exam, plans)
        if saved.report_changed and saved.record.get("status") == "final":
            report_audited(tx, saved, self.config.plans())
            report_files(tx, saved.record["exam_no"], self.config.plans())

    def _deletion(self, tx: Transaction, event: Event) -> None:
        payload = dict(event.payload)
        deleted = delete_images(
            tx.conn,
            str(payload["accession"]),
            payload.get("series_uids") or [],
            payload.get("sop_uids") or [],
            at=utc_text(event.received_at),
            event_id=event.id,
        )
        if not payload.get("at"):  # when PACS did not say: when the agent heard, local time
            local = event.received_at.astimezone(ZoneInfo(self.config.timezone))
            payload["at"] = local.replace(microsecond=0, tzinfo=None).isoformat()
        if deleted.instances:
            offer_deletion(tx, deleted, payload, self.config.plans(), event.id)

    def _rejected(self, tx: Transaction, event: Event) -> None:
        note = event.payload["rejected"]
        local = event.received_at.astimezone(ZoneInfo(self.config.timezone))
        calling = str(event.payload.get("calling_ae") or "PACS")
        taken = reject_instances(
            tx.conn, note["instances"], at=utc_text(event.received_at), event_id=event.id
        )
        for accession, deleted in taken:
            payload = {
                "accession": accession,
                "by": f"{calling} (IOCM {note['code']})",
                "at": local.replace(microsecond=0, tzinfo=None).isoformat(),
                "sop_uids": deleted.instances,
            }
            offer_deletion(tx, deleted, payload, self.config.plans(), f"{event.id}:{accession}")

    def _stable(self, tx: Transaction, event: Event) -> None:
        study_uid = str(event.payload["study_uid"])
        row = tx.conn.execute(
            "SELECT state, last_received FROM im_studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
        # A newer instance since the scheduler looked: the study is still receiving.
        if row is None or row[0] != "receiving" or row[1] != event.payload["last_received"]:
            return
        at = utc_text(event.received_at)
        tx.conn.execute(
            "UPDATE im_studies SET state = 'stable', stable_at = ?, generation = generation + 1"
            " WHERE study_uid = ?",
            (at, study_uid),
        )
        forward(tx, study_uid, self.config.plans(), at, self.config.push_from_status)

    def _statistics(self, tx: Transaction, payload: dict[str, Any]) -> None:
        last = date.fromisoformat(str(payload["date"]))
        slot = str(payload["slot"])
        days = days_to_report(tx.conn, last, slot, self.config.statistics_days)
        items = counts(tx.conn, days)
        # Queued even with no exam: an uplink may report its classes with count 0 (its choice).
        for uplink, offers in self.config.plans().items():
            if Offer.STATISTICS not in offers:
                continue
            tx.enqueue(
                uplink=uplink,
                kind=STATISTICS,
                order_key="statistics",
                dedupe_key=f"statistics:{payload['date']}:{slot}",
                payload={"date": str(payload["date"]), "dates": days, "items": items},
            )


def rejected_alert(event: Event) -> Alert:
    """The alert for an instance a DICOM source refused: a reason code, never patient data."""
    payload = event.payload
    reason = str(payload.get("reason") or "")
    disk = reason in DISK_REASONS
    # Free-text reasons and file names may carry what the file holds: only a code is shown.
    shown = reason if REASON_CODE.fullmatch(reason) else "unreadable; see the event"
    calling = str(payload.get("calling_ae") or "")
    sender = f" from AE {calling}" if AE_TITLE.fullmatch(calling) else ""
    message = (
        f"DICOM instances{sender} are refused: the spool's disk is (nearly) full"
        if disk
        else f"a DICOM instance{sender} was refused ({shown})"
    )
    if payload.get("quarantined"):
        message += "; the file is kept in quarantine"
    return Alert(
        code="dicom_disk_low" if disk else "dicom_rejected",
        subject=f"dicom:{event.source}",
        message=message,
        # Every refused instance reports the full disk: one alert a day per source, not thousands.
        origin=f"disk:{event.source}:{event.occurred_at:%Y-%m-%d}" if disk else f"event:{event.id}",
        severity="error",
    )
