"""Washer-disinfector cycles (from receipts) joined to a scope's reprocessing cycle."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.events import Event
from agent.journal.alerts import Alert
from agent.journal.transaction import Transaction
from agent.reprocessing.config import Endoscope, ReprocessingConfig, StaffBadge, Station, Washer
from agent.reprocessing.records import RecordBuilder, phase_reader
from agent.vocabulary.steps import StepKind
from agent.vocabulary.tags import TagIndex, code_read

Enqueue = Callable[[Transaction, str, Endoscope, str, dict[str, Any]], None]
PHASE_KINDS = frozenset(StepKind) - {StepKind.MACHINE_WASH, StepKind.STORE, StepKind.USE}


class WasherCycles:
    """Links a `washer.cycle` to its scope and cycle, stores its phases, queues its records."""

    def __init__(
        self, config: ReprocessingConfig, tags: TagIndex[Endoscope | StaffBadge], enqueue: Enqueue
    ) -> None:
        self.config = config
        self.records = RecordBuilder(config)
        self.tags = tags
        self.enqueue = enqueue
        self.washers = {w.id: w for w in config.washers}
        self.scopes = {e.number: e for e in config.endoscopes}
        self.by_steel = {e.steel_number: e for e in config.endoscopes if e.steel_number}

    def handle(self, tx: Transaction, event: Event) -> str | None:
        """Record the cycle; return the clean_id it joined, or None if no scope cycle matched."""
        cycle = event.payload
        start = datetime.fromisoformat(cycle["started_at"]).astimezone(UTC)
        end = datetime.fromisoformat(cycle["ended_at"]).astimezone(UTC)
        washer = self.washers.get(cycle["washer"])
        station = self._station(washer)
        scope = self._scope(tx.conn, cycle["scope"], station, start)
        clean_id = self._cycle(tx.conn, scope, start, end) if scope else None
        failed = [c["name"] for c in cycle.get("channels", ()) if c["result"] != "pass"]
        inserted = tx.conn.execute(
            "INSERT OR IGNORE INTO washer_cycles (washer, cycle_number, program, started_at,"
            " ended_at, operator, scope, clean_id, result, leak_test, error_code,"
            " failed_channels, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cycle["washer"],
                cycle["cycle_number"],
                cycle.get("program", ""),
                start.isoformat(),
                end.isoformat(),
                cycle.get("operator", ""),
                scope.number if scope else None,
                clean_id,
                cycle["result"],
                cycle.get("leak_test"),
                cycle.get("error_code", ""),
                json.dumps(failed, ensure_ascii=False),
                event.id,
            ),
        ).rowcount
        if not inserted:
            return None  # the same receipt again (a re-read file, a reprinted receipt)
        if scope is None or clean_id is None:
            tx.raise_alert(
                Alert(
                    code="washer_cycle_unlinked",
                    subject=f"washer:{cycle['washer']}",
                    message=f"cycle {cycle['cycle_number']} of washer {cycle['washer']} matches"
                    " no scope in reprocessing: check the receipt's scope number and the taps",
                    origin=f"event:{event.id}",
                    severity="warning",
                )
            )
            return None
        user = cycle.get("operator") or self.config.default_upload_user
        for phase in cycle["phases"]:
            self._phase(tx, scope, clean_id, (washer, station), phase, user[:32])
        return clean_id

    def _station(self, washer: Washer | None) -> Station | None:
        if washer is None:
            return None
        return next((s for s in self.config.stations if s.washer == washer.id), None)

    def _scope(
        self, conn: sqlite3.Connection, printed: str, station: Station | None, start: datetime
    ) -> Endoscope | None:
        """The scope the receipt names (number, steel number or tag), else the one in the washer."""
        printed = printed.strip()
        if printed:
            # Receipts print "GIF-H290 2901234" (model and serial) as often as the number alone.
            for candidate in (printed, *printed.split()):
                found = self._named(candidate)
                if found is not None:
                    return found
            return None
        if station is None:
            return None
        row = conn.execute(
            "SELECT s.number FROM rp_steps t JOIN rp_cycles c ON c.clean_id = t.clean_id"
            " JOIN rp_scopes s ON s.number = c.scope"
            " WHERE t.station = ? AND t.started_at <= ? ORDER BY t.started_at DESC LIMIT 1",
            (station.reader, start.isoformat()),
        ).fetchone()
        return self.scopes.get(row[0]) if row else None

    def _named(self, text: str) -> Endoscope | None:
        found = self.scopes.get(text) or self.by_steel.get(text)
        if found is None:
            try:
                tagged = self.tags.get(text, code_read(text).bits)
            except ValueError:
                tagged = None
            found = tagged if isinstance(tagged, Endoscope) else None
        return found

    def _cycle(
        self, conn: sqlite3.Connection, scope: Endoscope, start: datetime, end: datetime
    ) -> str | None:
        """The scope's cycle that was open while the washer ran."""
        row = conn.execute(
            "SELECT clean_id FROM rp_cycles WHERE scope = ? AND opened_at <= ?"
            " AND (used_at IS NULL OR used_at >= ?) ORDER BY opened_at DESC LIMIT 1",
            (scope.number, start.isoformat(), end.isoformat()),
        ).fetchone()
        return str(row[0]) if row else None

    def _phase(  # noqa: PLR0917 - one call site, each argument named there
        self,
        tx: Transaction,
        scope: Endoscope,
        clean_id: str,
        where: tuple[Washer | None, Station | None],
        phase: dict[str, Any],
        user: str,
    ) -> None:
        washer, station = where
        kind = StepKind(phase["kind"])
        if kind not in PHASE_KINDS:
            return
        start = datetime.fromisoformat(phase["started_at"]).astimezone(UTC)
        end = datetime.fromisoformat(phase["ended_at"]).astimezone(UTC)
        ratio = (station.ratio_number if station else "") or None
        row = tx.conn.execute(
            "INSERT INTO rp_steps (clean_id, station, step_id, kind, operator, started_at,"
            " ended_at, source, disinfectant, concentration_pct, temperature_c, ratio_number)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'washer', ?, ?, ?, ?)",
            (
                clean_id,
                washer.id if washer else phase.get("washer", ""),
                washer.phase_steps.get(kind, station.step_id if station else 0) if washer else 0,
                kind.value,
                user,
                start.isoformat(),
                end.isoformat(),
                phase.get("disinfectant"),
                phase.get("concentration_pct"),
                phase.get("temperature_c"),
                ratio,
            ),
        ).lastrowid
        reader = self._reader(washer, station, kind)
        if reader:
            self.enqueue(
                tx,
                "uploadReadData",
                scope,
                f"uploadReadData:washer:{row}",
                self.records.read_data(clean_id, start, scope, reader, user),
            )
        if kind is StepKind.ENZYME:
            record = self.records.enzyme_wash(
                clean_id, scope, user, (start, end), phase.get("temperature_c")
            )
            self.enqueue(tx, "uploadEnzymeWashData", scope, f"uploadEnzymeWashData:w{row}", record)
        elif kind in (StepKind.DISINFECT, StepKind.STERILIZE):
            record = self.records.ster_process(
                clean_id,
                scope,
                agent_type=1 if kind is StepKind.STERILIZE else 0,
                user=user,
                span=(start, end),
                ratio_number=ratio or "",
            )
            self.enqueue(tx, "sterProcess", scope, f"sterProcess:w{row}", record)

    def _reader(self, washer: Washer | None, station: Station | None, kind: StepKind) -> str:
        if washer is not None and kind in washer.phase_steps:
            return phase_reader(washer, kind)
        return station.platform_reader_id if station else ""


def rejected_alert(event: Event) -> Alert:
    """The alert for a receipt the capture could not parse (kept in quarantine)."""
    payload = event.payload
    return Alert(
        code="washer_receipt_rejected",
        subject=f"washer:{event.source}",
        message=f"receipt not understood ({payload.get('reason', 'unknown reason')});"
        f" kept in {payload.get('quarantined', 'quarantine')}",
        origin=f"event:{event.id}",
        severity="error",
    )
