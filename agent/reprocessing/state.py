"""Read models of the reprocessing state for people: the API and the dashboard."""

from __future__ import annotations

import sqlite3
from typing import Any


def scope_states(conn: sqlite3.Connection, only: str | None = None) -> list[dict[str, Any]]:
    """Each reprocessed scope (or only scope `only`): cycle, step, verdict, violations, blocked."""
    rows = conn.execute(
        "SELECT s.number, s.cycle_state, s.clean_id, c.compliance, c.override_by,"
        " c.override_reason, t.kind, t.started_at, s.last_use_at, s.stored_at"
        " FROM rp_scopes s LEFT JOIN rp_cycles c ON c.clean_id = s.clean_id"
        " LEFT JOIN rp_steps t ON t.id = s.step_row WHERE ? IS NULL OR s.number = ?"
        " ORDER BY s.number",
        (only, only),
    ).fetchall()
    states = []
    for number, state, clean_id, compliance, by, reason, step, since, used, stored in rows:
        violations = [
            {"rule": r, "clause": c, "severity": v, "message": m}
            for r, c, v, m in conn.execute(
                "SELECT rule, clause, severity, message FROM rp_violations WHERE clean_id = ?"
                " ORDER BY id",
                (clean_id,),
            )
        ]
        states.append(
            {
                "number": number,
                "cycle_state": state,
                "clean_id": clean_id,
                "compliance": compliance,
                "blocked": compliance == "non_compliant",
                "override": {"by": by, "reason": reason} if by else None,
                "step": step,
                "step_since": since,
                "stored_at": stored,
                "last_use_at": used,
                "violations": violations,
            }
        )
    return states
