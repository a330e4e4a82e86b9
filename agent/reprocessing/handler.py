"""The reprocessing state machine: taps become cycles, steps and platform records (pure, no I/O)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.errors import AgentError
from agent.events import Event
from agent.journal.transaction import Transaction
from agent.reprocessing.compliance import Compliance
from agent.reprocessing.config import (
    Endoscope,
    ReprocessingConfig,
    StaffBadge,
    Station,
    tag_index,
)
from agent.reprocessing.facts import Stage
from agent.reprocessing.records import RecordBuilder, content_key, make_clean_id
from agent.reprocessing.state import scope_states
from agent.reprocessing.washer import WasherCycles, rejected_alert
from agent.vocabulary.steps import StepKind
from agent.vocabulary.tags import code_read

DISINFECTION = (StepKind.DISINFECT, StepKind.STERILIZE)
CLEANING = (StepKind.PRE_CLEAN, StepKind.LEAK_TEST, StepKind.CLEAN, StepKind.ENZYME)
AFTER_CLEANING = (*DISINFECTION, StepKind.MACHINE_WASH)


class UnknownReaderError(AgentError):
    """A tap came from a reader no station is configured for."""


class UnknownTagError(AgentError):
    """A tag that is neither a scope, a badge, nor (at the use station) a patient code."""


class ReprocessingHandler:
    """Handles taps, patients, batches, washer cycles and overrides of the endoscopy centre."""

    kinds = ("rfid.read", "reprocessing.*", "washer.cycle", "washer.rejected")

    def __init__(self, name: str, config: ReprocessingConfig) -> None:
        self.name = name
        self.config = config
        self.records = RecordBuilder(config)
        self.stations = {s.reader: s for s in config.stations}
        self.tags = tag_index(config)
        self.patient_code = re.compile(config.patient_code_pattern)
        self.compliance = Compliance(config)
        self.washer_cycles = WasherCycles(config, self.tags, self._enqueue)

    def handle(self, tx: Transaction, event: Event) -> None:
        """Apply one event to the reprocessing state and queue the records it implies."""
        # State tables compare ISO times as text: keep every stored time in UTC.
        event = replace(event, occurred_at=event.occurred_at.astimezone(UTC))
        payload = event.payload
        if event.kind == "reprocessing.patient":
            self._set_patient(tx.conn, payload["reader_id"], payload, event.occurred_at)
            return
        if event.kind == "reprocessing.override":
            self.compliance.override(tx, payload, event.occurred_at)
            self._publish_state(tx, payload["scope"])
            return
        if event.kind == "washer.cycle":
            clean_id = self.washer_cycles.handle(tx, event)
            if clean_id is not None:
                self.compliance.judge(tx, clean_id, "progress", event.occurred_at)
                scope = tx.conn.execute(
                    "SELECT scope FROM rp_cycles WHERE clean_id = ?", (clean_id,)
                ).fetchone()
                self._publish_state(tx, scope[0])
            return
        if event.kind == "washer.rejected":
            tx.raise_alert(rejected_alert(event))
            return
        if event.kind == "reprocessing.batch":
            self._reader_row(tx.conn, payload["reader_id"])
            tx.conn.execute(
                "UPDATE rp_readers SET ratio_number = ? WHERE reader = ?",
                (payload["ratio_number"], payload["reader_id"]),
            )
            return
        station = self.stations.get(payload["reader_id"])
        if station is None:
            raise UnknownReaderError(f"no station is configured for reader {payload['reader_id']}")
        bits = payload.get("bits")
        if bits is None:  # a source that does not say: read the code as the drivers would
            bits = code_read(str(payload["tag"])).bits
        found = self.tags.get(str(payload["tag"]), int(bits))
        if isinstance(found, Endoscope):
            self._scope_tap(tx, event, station, found)
            self._publish_state(tx, found.number)
        elif isinstance(found, StaffBadge):
            self._badge_tap(tx.conn, station, found, event.occurred_at)
        elif station.kind is StepKind.USE and self.patient_code.match(str(payload["tag"])):
            self._set_patient(
                tx.conn, station.reader, {"patient_id": payload["tag"]}, event.occurred_at
            )
        else:
            raise UnknownTagError(f"tag at reader {station.reader} is not a known scope or badge")

    def _publish_state(self, tx: Transaction, number: str) -> None:
        """Queue the scope's state for the uplinks that follow it (retained on MQTT)."""
        for state in scope_states(tx.conn, number):
            tx.publish("scope.state", number, {**state, "topic_suffix": number})

    # --- operators and patients -----------------------------------------------------------

    def _reader_row(self, conn: sqlite3.Connection, reader: str) -> None:
        conn.execute("INSERT OR IGNORE INTO rp_readers (reader) VALUES (?)", (reader,))

    def _badge_tap(
        self, conn: sqlite3.Connection, station: Station, badge: StaffBadge, at: datetime
    ) -> None:
        self._reader_row(conn, station.reader)
        conn.execute(
            "UPDATE rp_readers SET operator_id = ?, operator_name = ?, operator_at = ?"
            " WHERE reader = ?",
            (badge.id, badge.name, at.isoformat(), station.reader),
        )

    def _set_patient(
        self, conn: sqlite3.Connection, reader: str, payload: dict[str, Any], at: datetime
    ) -> None:
        self._reader_row(conn, reader)
        conn.execute(
            "UPDATE rp_readers SET patient_id = ?, patient_name = ?, patient_at = ?"
            " WHERE reader = ?",
            (payload["patient_id"], payload.get("patient_name", ""), at.isoformat(), reader),
        )

    def _operator(self, conn: sqlite3.Connection, reader: str, at: datetime) -> str:
        row = conn.execute(
            "SELECT operator_id, operator_name, operator_at FROM rp_readers WHERE reader = ?",
            (reader,),
        ).fetchone()
        if row is None or row[2] is None:
            return ""
        expiry = timedelta(minutes=self.config.operator_expiry_minutes)
        if at - datetime.fromisoformat(row[2]) > expiry:
            return ""
        return str(row[1] if self.config.upload_user == "name" else row[0])

    # --- scopes ----------------------------------------------------------------------------

    def _scope_tap(self, tx: Transaction, event: Event, station: Station, scope: Endoscope) -> None:
        conn, at = tx.conn, event.occurred_at
        conn.execute("INSERT OR IGNORE INTO rp_scopes (number) VALUES (?)", (scope.number,))
        clean_id, seq, state, step_row, stored_at, cabinet, last_use = conn.execute(
            "SELECT clean_id, cycle_seq, cycle_state, step_row, stored_at, cabinet, last_use_at"
            " FROM rp_scopes WHERE number = ?",
            (scope.number,),
        ).fetchone()
        repeat = self._is_repeat(
            conn, station=station, state=state, step_row=step_row, last_use=last_use, at=at
        )
        if repeat:
            return  # the raw event stays in the journal; it changes nothing
        user = self._operator(conn, station.reader, at) or self.config.default_upload_user
        leaving_storage = stored_at is not None and station.kind is not StepKind.STORE
        if leaving_storage:
            stored = datetime.fromisoformat(stored_at)
            self._enqueue(
                tx,
                "endoscopeSave",
                scope,
                f"endoscopeSave:{scope.number}:{stored_at}",
                self.records.endoscope_save(cabinet or "", scope, stored, at),
            )
            conn.execute(
                "UPDATE rp_scopes SET stored_at = NULL, cabinet = NULL WHERE number = ?",
                (scope.number,),
            )
            stale = at - stored > timedelta(hours=self.config.new_cycle_after_storage_hours)
        else:
            stale = False
        if station.kind is StepKind.USE:
            self._close_step(tx, scope, step_row, at)
            reprocessed = clean_id if state == "open" else None
            self.compliance.check_before_use(tx, event, scope.number, reprocessed)
            self._use(
                tx,
                event=event,
                station=station,
                scope=scope,
                clean_id=clean_id,
                user=user,
                reprocessed=reprocessed,
            )
            return
        if state != "open" or stale or self._starts_over(conn, station, clean_id):
            self._close_step(tx, scope, step_row, at)
            step_row = None
            seq += 1
            clean_id = make_clean_id(scope.number, at.astimezone(self.records.zone), seq)
            conn.execute(
                "INSERT INTO rp_cycles (clean_id, scope, opened_at, opened_by, previous_use_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (clean_id, scope.number, at.isoformat(), event.id, last_use),
            )
        open_station = None
        if step_row is not None:
            open_station = conn.execute(
                "SELECT station FROM rp_steps WHERE id = ?", (step_row,)
            ).fetchone()[0]
        self._close_step(tx, scope, step_row, at)
        if open_station == station.reader and station.tap_mode == "enter_exit":
            step_row = None  # the exit tap: the step is done, the scope waits for the next one
        else:
            disinfecting = station.kind in DISINFECTION
            step_row = conn.execute(
                "INSERT INTO rp_steps (clean_id, station, step_id, kind, operator, started_at,"
                " disinfectant, concentration_pct, ratio_number)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    clean_id,
                    station.reader,
                    station.step_id,
                    station.kind.value,
                    user,
                    at.isoformat(),
                    station.disinfectant if disinfecting else None,
                    station.concentration_pct if disinfecting else None,
                    self._batch(conn, station) if disinfecting else None,
                ),
            ).lastrowid
            if station.kind is StepKind.STORE:
                conn.execute(
                    "UPDATE rp_scopes SET stored_at = ?, cabinet = ? WHERE number = ?",
                    (at.isoformat(), station.cabinet, scope.number),
                )
        conn.execute(
            "UPDATE rp_scopes SET clean_id = ?, cycle_seq = ?, cycle_state = 'open', step_row = ?"
            " WHERE number = ?",
            (clean_id, seq, step_row, scope.number),
        )
        self._enqueue(
            tx,
            "uploadReadData",
            scope,
            f"uploadReadData:{event.id}",
            self.records.read_data(clean_id, at, scope, station.platform_reader_id, user),
        )
        stage: Stage = "complete" if station.kind is StepKind.STORE else "progress"
        self.compliance.judge(tx, clean_id, stage, at)

    def _starts_over(self, conn: sqlite3.Connection, station: Station, clean_id: str) -> bool:
        """A cleaning tap after the cycle's disinfection: the scope is being reprocessed anew."""
        if station.kind not in CLEANING:
            return False
        return (
            conn.execute(
                "SELECT 1 FROM rp_steps WHERE clean_id = ? AND kind IN (?, ?, ?) LIMIT 1",
                (clean_id, *(k.value for k in AFTER_CLEANING)),
            ).fetchone()
            is not None
        )

    def _is_repeat(
        self,
        conn: sqlite3.Connection,
        *,
        station: Station,
        state: str,
        step_row: int | None,
        last_use: str | None,
        at: datetime,
    ) -> bool:
        """A tap that repeats the scope's current state (a re-read, an at-least-once redelivery)."""
        if station.kind is StepKind.USE:
            window = timedelta(seconds=self.config.repeat_use_seconds)
            return (
                state == "used"
                and last_use is not None
                and at - datetime.fromisoformat(last_use) <= window
            )
        if station.tap_mode != "enter" or state != "open" or step_row is None:
            return False
        row = conn.execute("SELECT station FROM rp_steps WHERE id = ?", (step_row,)).fetchone()
        return bool(row[0] == station.reader)  # already at this station

    def _close_step(
        self, tx: Transaction, scope: Endoscope, step_row: int | None, at: datetime
    ) -> None:
        """End the open step at `at` and queue the record its kind implies."""
        if step_row is None:
            return
        conn = tx.conn
        row = conn.execute(
            "SELECT clean_id, station, kind, operator, started_at, ended_at"
            " FROM rp_steps WHERE id = ?",
            (step_row,),
        ).fetchone()
        clean_id, reader, kind, operator, started_at, ended_at = row
        if ended_at is not None:
            return
        conn.execute("UPDATE rp_steps SET ended_at = ? WHERE id = ?", (at.isoformat(), step_row))
        conn.execute("UPDATE rp_scopes SET step_row = NULL WHERE number = ?", (scope.number,))
        start = datetime.fromisoformat(started_at)
        station = self.stations[reader]
        user = operator or self.config.default_upload_user
        if kind == StepKind.ENZYME:
            self._enqueue(
                tx,
                "uploadEnzymeWashData",
                scope,
                f"uploadEnzymeWashData:{clean_id}:{step_row}",
                self.records.enzyme_wash(clean_id, scope, user, (start, at)),
            )
        elif kind in DISINFECTION:
            ratio = conn.execute(
                "SELECT ratio_number FROM rp_steps WHERE id = ?", (step_row,)
            ).fetchone()[0]
            self._enqueue(
                tx,
                "sterProcess",
                scope,
                f"sterProcess:{clean_id}:{step_row}",
                self.records.ster_process(
                    clean_id,
                    scope,
                    agent_type=station.agent_type,
                    user=user,
                    span=(start, at),
                    ratio_number=ratio or "",
                ),
            )

    def _batch(self, conn: sqlite3.Connection, station: Station) -> str | None:
        """The disinfectant batch in use at a station: the last one registered, else configured."""
        row = conn.execute(
            "SELECT ratio_number FROM rp_readers WHERE reader = ?", (station.reader,)
        ).fetchone()
        return (row[0] if row and row[0] else "") or station.ratio_number or None

    def _use(
        self,
        tx: Transaction,
        *,
        event: Event,
        station: Station,
        scope: Endoscope,
        clean_id: str | None,
        user: str,
        reprocessed: str | None,
    ) -> None:
        conn, at = tx.conn, event.occurred_at
        patient = conn.execute(
            "SELECT patient_id, patient_name FROM rp_readers WHERE reader = ?", (station.reader,)
        ).fetchone()
        patient_id, patient_name = patient or (None, None)
        conn.execute(
            "UPDATE rp_readers SET patient_id = NULL, patient_name = NULL, patient_at = NULL"
            " WHERE reader = ?",
            (station.reader,),
        )
        if clean_id is not None:
            conn.execute(
                "UPDATE rp_cycles SET used_at = ?, patient_id = ? WHERE clean_id = ?",
                (at.isoformat(), patient_id, clean_id),
            )
        conn.execute(
            "INSERT INTO rp_uses (scope, used_at, patient_id, patient_name, clean_id, station,"
            " operator, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scope.number,
                at.isoformat(),
                patient_id,
                patient_name,
                reprocessed,
                station.reader,
                user,
                event.id,
            ),
        )
        conn.execute(
            "UPDATE rp_scopes SET cycle_state = 'used', step_row = NULL, last_use_at = ?"
            " WHERE number = ?",
            (at.isoformat(), scope.number),
        )
        # A use with no cycle since the last use is still reported (the platform answers
        # 404 "not cleaned"): hiding it would hide the compliance event.
        self._enqueue(
            tx,
            "uploadUseStepData",
            scope,
            f"uploadUseStepData:{event.id}",
            self.records.use_step(
                clean_id or "", scope, patient_id or "", patient_name or "", user
            ),
        )

    def _enqueue(
        self, tx: Transaction, kind: str, scope: Endoscope, dedupe: str, payload: dict[str, Any]
    ) -> None:
        # One order key per scope: its cleaning records always go out before its use.
        tx.enqueue(
            uplink=self.config.uplink,
            kind=kind,
            order_key=f"scope:{scope.number}",
            dedupe_key=dedupe,
            payload=payload,
        )

    def queue_master_data(self, conn: sqlite3.Connection) -> int:
        """Queue scope, reader and step master data; identical content is never queued twice."""
        tx = Transaction(conn, None, set())
        queued = 0
        for kind, key, payload in self.records.master_data():
            queued += tx.enqueue(
                uplink=self.config.uplink,
                kind=kind,
                order_key=f"master:{kind}:{key}",
                dedupe_key=content_key(kind, key, payload),
                payload=payload,
            )
        return queued
