"""Judge a cycle against the WS 507-2016 rules inside the ingest transaction; block and alert."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from agent.events import Event
from agent.journal.alerts import Alert
from agent.journal.transaction import Transaction
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.facts import BatchTest, CycleFacts, Stage, StepFact, Violation, WasherFact
from agent.reprocessing.rules import evaluate
from agent.reprocessing.verdicts import error_messages, record_violation, verdict
from agent.vocabulary.steps import Disinfectant, StepKind

DISINFECTION = (StepKind.DISINFECT.value, StepKind.STERILIZE.value)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Compliance:
    """Collects a cycle's facts from the state tables and records what the rules find."""

    def __init__(self, config: ReprocessingConfig) -> None:
        self.config = config
        self.systems = {e.number: e.system for e in config.endoscopes}
        self.washer_systems = {w.id: w.system for w in config.washers}

    def facts(
        self, conn: sqlite3.Connection, clean_id: str, use_at: datetime | None = None
    ) -> CycleFacts:
        """Everything the rules need about cycle `clean_id`, read in this transaction."""
        scope, previous_use = conn.execute(
            "SELECT scope, previous_use_at FROM rp_cycles WHERE clean_id = ?", (clean_id,)
        ).fetchone()
        steps = []
        batches: list[str] = []
        first_disinfection: dict[str, datetime] = {}
        for kind, start, end, source, station, agent, pct, temp, ratio in conn.execute(
            "SELECT kind, started_at, ended_at, source, station, disinfectant, concentration_pct,"
            " temperature_c, ratio_number FROM rp_steps WHERE clean_id = ?"
            " ORDER BY started_at, id",
            (clean_id,),
        ):
            started = datetime.fromisoformat(start)
            steps.append(
                StepFact(
                    kind=StepKind(kind),
                    started_at=started,
                    ended_at=_time(end),
                    source=source,
                    station=station,
                    disinfectant=Disinfectant(agent) if agent else None,
                    concentration_pct=pct,
                    temperature_c=temp,
                )
            )
            if kind in DISINFECTION and ratio:
                if ratio not in batches:
                    batches.append(ratio)
                first_disinfection.setdefault(ratio, started)
        washers = tuple(
            WasherFact(
                washer=washer,
                cycle_number=number,
                started_at=datetime.fromisoformat(start),
                ended_at=datetime.fromisoformat(end),
                result=result,
                leak_test=leak,
                error_code=error or "",
                failed_channels=tuple(json.loads(channels or "[]")),
                washer_system=self.washer_systems.get(washer),
            )
            for washer, number, start, end, result, leak, error, channels in conn.execute(
                "SELECT washer, cycle_number, started_at, ended_at, result, leak_test, error_code,"
                " failed_channels FROM washer_cycles WHERE clean_id = ? ORDER BY started_at",
                (clean_id,),
            )
        )
        return CycleFacts(
            scope=scope,
            system=self.systems.get(scope, "other"),
            steps=tuple(steps),
            washers=washers,
            previous_use_at=_time(previous_use),
            batches_used=tuple(batches),
            batch_tests=tuple(self._batch_tests(conn, first_disinfection)),
            use_at=use_at,
            timezone=self.config.timezone,
        )

    def _batch_tests(
        self, conn: sqlite3.Connection, first_use: dict[str, datetime]
    ) -> list[BatchTest]:
        found = []
        for ratio, used_at in first_use.items():
            row = conn.execute(
                "SELECT tested_at, passed FROM quality_tests WHERE kind = 'disinfectant'"
                " AND subject = ? AND tested_at <= ? ORDER BY tested_at DESC LIMIT 1",
                (ratio, used_at.isoformat()),
            ).fetchone()
            if row is not None:
                found.append(BatchTest(ratio, datetime.fromisoformat(row[0]), bool(row[1])))
        return found

    def judge(self, tx: Transaction, clean_id: str, stage: Stage, now: datetime) -> list[Violation]:
        """Run the rules on the cycle as of event time `now`; record, alert and set its verdict.

        Returns the violations found now (new or already known).
        """
        conn = tx.conn
        facts = self.facts(conn, clean_id, now if stage == "use" else None)
        found = evaluate(facts, self.config.rules, stage)
        at = now.isoformat()
        new_errors = False
        for violation in found:
            if not record_violation(conn, clean_id, violation, at, tx.event_id):
                continue
            new_errors |= violation.severity == "error"
            # A batch's missing test is the batch's, whichever scope met it: one card, and
            # one snooze, per batch.
            batch = violation.details.get("batch")
            tx.raise_alert(
                Alert(
                    code=f"ws507.{violation.rule}",
                    subject=f"batch:{batch}" if batch else f"scope:{facts.scope}",
                    message=f"{clean_id}: {violation.message} (WS 507-2016 {violation.clause})",
                    origin=f"cycle:{clean_id}",
                    severity=violation.severity,
                )
            )
        if not new_errors and stage != "progress":
            conn.execute(
                "UPDATE rp_cycles SET compliance = 'compliant', completed_at = COALESCE("
                "completed_at, ?) WHERE clean_id = ? AND compliance = 'pending'",
                (at, clean_id),
            )
        return found

    def check_before_use(
        self, tx: Transaction, event: Event, number: str, clean_id: str | None
    ) -> None:
        """Judge the cycle at the use tap; a scope not fit for a patient raises a critical alert."""
        if clean_id is None:
            problem = "no reprocessing cycle since its last use / 上次使用后未经洗消"
            code = "scope_not_reprocessed"
        else:
            self.judge(tx, clean_id, "use", event.occurred_at)
            if verdict(tx.conn, clean_id) != "non_compliant":
                return
            problem = f"cycle {clean_id} is non-compliant: " + "; ".join(
                error_messages(tx.conn, clean_id)
            )
            code = "scope_blocked_used"
        tx.raise_alert(
            Alert(
                code=code,
                subject=f"scope:{number}",
                message=f"scope {number} tapped for use on a patient: {problem}",
                origin=f"event:{event.id}",
                severity="critical",
            )
        )

    def override(self, tx: Transaction, payload: dict[str, Any], at: datetime) -> None:
        """A named person releases a blocked scope's current cycle, with a reason."""
        row = tx.conn.execute(
            "SELECT clean_id FROM rp_scopes WHERE number = ?", (payload["scope"],)
        ).fetchone()
        if row is None or row[0] is None:
            return
        tx.conn.execute(
            "UPDATE rp_cycles SET compliance = 'overridden', override_by = ?, override_reason = ?,"
            " override_at = ? WHERE clean_id = ? AND compliance = 'non_compliant'",
            (payload["by"], payload["reason"], at.isoformat(), row[0]),
        )
