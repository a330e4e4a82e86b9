"""Clinical lookback (AAMI ST91 traceability): which patients a scope, washer or disinfectant batch
reached, and which scopes and cycles a patient met. Pure reads of the reprocessing tables."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from agent.errors import AgentError
from agent.events import Event
from agent.reprocessing.config import ReprocessingConfig
from agent.vocabulary.masking import mask_id, mask_name

Kind = Literal["scope", "patient", "washer", "batch"]
KINDS: tuple[Kind, ...] = ("scope", "patient", "washer", "batch")
AUDIT_EVENT = "lookback.run"


class LookbackError(AgentError):
    """A lookback that cannot be answered as asked (an unknown cycle, a missing period)."""


@dataclass(frozen=True, slots=True)
class Question:
    """What infection control asks: from a scope (since a time or a named cycle), a patient, a
    washer or a disinfectant batch (over a period). Times are aware datetimes."""

    kind: Kind
    subject: str
    since: datetime | None = None
    until: datetime | None = None
    cycle: str | None = None  # scope lookback: from this cycle on (its opening)

    def audit_detail(self) -> dict[str, Any]:
        """The question as the audit trail keeps it (times as ISO text)."""
        found = asdict(self)
        for name in ("since", "until"):
            if found[name] is not None:
                found[name] = found[name].astimezone(UTC).isoformat()
        return found


def resolve_scope(configs: Sequence[ReprocessingConfig], given: str) -> str:
    """The scope number `given` names: a number, an RFID tag or a steel (serial) number."""
    for config in configs:
        for scope in config.endoscopes:
            if given in (scope.number, scope.rfid) or (
                scope.steel_number and given == scope.steel_number
            ):
                return scope.number
    return given  # a scope no longer configured: its number as recorded


def parse_moment(text: str, zone: tzinfo) -> datetime:
    """`2026-12-01` or `2026-12-01T08:30` (the centre's wall time) or ISO with an offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise LookbackError(
            f"{text!r} is not a date or time (2026-12-01, 2026-12-01T08:30)"
        ) from err
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def question_from(fields: Mapping[str, str], configs: Sequence[ReprocessingConfig]) -> Question:
    """The question a form, query string or command line asks (kind, subject, since, until,
    cycle); LookbackError naming every problem at once."""
    zone = ZoneInfo(configs[0].timezone) if configs else UTC
    problems: list[str] = []
    kind = fields.get("kind", "")
    if kind not in KINDS:
        problems.append(f"kind: one of {', '.join(KINDS)}")
    subject = fields.get("subject", "").strip()
    if not subject:
        problems.append("subject: the scope, patient, washer or batch to look back from")
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_moment(fields[name], zone) if fields.get(name) else None
        except LookbackError as err:
            problems.append(f"{name}: {err}")
    if problems:
        raise LookbackError("; ".join(problems))
    if kind == "scope":
        subject = resolve_scope(configs, subject)
    cycle = fields.get("cycle", "").strip() or None
    return Question(cast("Kind", kind), subject, times["since"], times["until"], cycle)


def answer(conn: sqlite3.Connection, question: Question) -> list[dict[str, Any]]:
    """Entries `{"use": …, "cycle": …}`: each use with the cycle before it (scope, patient), or
    each cycle with each use after it (washer, batch; `use` None while it is not used yet)."""
    since, until = _iso(question.since), _iso(question.until)
    if question.kind == "scope":
        if question.cycle:
            row = conn.execute(
                "SELECT opened_at FROM rp_cycles WHERE clean_id = ? AND scope = ?",
                (question.cycle, question.subject),
            ).fetchone()
            if row is None:
                raise LookbackError(f"scope {question.subject} has no cycle {question.cycle}")
            since = row[0]
        if since is None:
            raise LookbackError("a scope lookback needs a start (a time or a cycle)")
        uses = _uses(conn, "scope = ? AND used_at >= ?", (question.subject, since), until)
        return _with_cycles(conn, uses)
    if question.kind == "patient":
        uses = _uses(
            conn, "patient_id = ? AND used_at >= ?", (question.subject, since or ""), until
        )
        return _with_cycles(conn, uses)
    if since is None or until is None:
        raise LookbackError(f"a {question.kind} lookback needs a period (since and until)")
    if question.kind == "washer":
        sql = (
            "SELECT DISTINCT clean_id FROM washer_cycles WHERE washer = ? AND started_at >= ?"
            " AND started_at < ? AND clean_id IS NOT NULL"
        )
    else:
        sql = (
            "SELECT DISTINCT clean_id FROM rp_steps WHERE ratio_number = ? AND started_at >= ?"
            " AND started_at < ?"
        )
    clean_ids = [row[0] for row in conn.execute(sql, (question.subject, since, until))]
    cycles = _cycles(conn, clean_ids)
    uses_of: dict[str, list[dict[str, Any]]] = {}
    for use in _uses(conn, "clean_id IN (SELECT value FROM json_each(?))", (_list(clean_ids),)):
        uses_of.setdefault(use["clean_id"], []).append(use)
    entries: list[dict[str, Any]] = []
    for cycle in sorted(cycles.values(), key=lambda c: (c["opened_at"], c["clean_id"])):
        followed: list[dict[str, Any] | None] = [*uses_of.get(cycle["clean_id"], [])]
        for follower in followed or [None]:
            entries.append({"use": follower, "cycle": cycle})
    if question.kind == "washer":
        entries += _unlinked_runs(conn, question.subject, since, until)
        entries.sort(key=_started)  # stable: a cycle's uses stay together, in order
    return entries


def _unlinked_runs(
    conn: sqlite3.Connection, washer: str, since: str, until: str
) -> list[dict[str, Any]]:
    """The washer's runs in the period that no cycle claimed (no scope tapped with them): each
    an entry of its own, `unlinked_run`, without a use or a cycle."""
    columns = ("scope", *WASHER_COLUMNS)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM washer_cycles WHERE washer = ? AND started_at >= ?"
        " AND started_at < ? AND clean_id IS NULL ORDER BY started_at, id",
        (washer, since, until),
    )
    return [
        {"use": None, "cycle": None, "unlinked_run": dict(zip(columns, row, strict=True))}
        for row in rows
    ]


def _started(entry: dict[str, Any]) -> str:
    run = entry.get("unlinked_run")
    return str(run["started_at"] if run is not None else entry["cycle"]["opened_at"])


def _iso(moment: datetime | None) -> str | None:
    # The tables hold UTC ISO text (the handler's `isoformat()`): compare like with like.
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


USE_COLUMNS = ("scope", "used_at", "patient_id", "patient_name", "clean_id", "station", "operator")


def _uses(
    conn: sqlite3.Connection, where: str, args: tuple[Any, ...], until: str | None = None
) -> list[dict[str, Any]]:
    if until is not None:
        where, args = f"{where} AND used_at < ?", (*args, until)
    rows = conn.execute(
        f"SELECT {', '.join(USE_COLUMNS)} FROM rp_uses WHERE {where} ORDER BY used_at, id", args
    )
    return [dict(zip(USE_COLUMNS, row, strict=True)) for row in rows]


def _with_cycles(conn: sqlite3.Connection, uses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cycles = _cycles(conn, {u["clean_id"] for u in uses if u["clean_id"]})
    return [{"use": use, "cycle": cycles.get(use["clean_id"] or "")} for use in uses]


CYCLE_COLUMNS = (
    "clean_id",
    "scope",
    "opened_at",
    "completed_at",
    "compliance",
    "override_by",
    "override_reason",
    "override_at",
)
STEP_COLUMNS = (
    "kind",
    "station",
    "operator",
    "started_at",
    "ended_at",
    "source",
    "disinfectant",
    "concentration_pct",
    "ratio_number",
)
WASHER_COLUMNS = (
    "washer",
    "cycle_number",
    "program",
    "started_at",
    "ended_at",
    "operator",
    "result",
    "leak_test",
    "error_code",
)

VIOLATION_COLUMNS = ("rule", "clause", "severity", "message")


def _cycles(conn: sqlite3.Connection, clean_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each cycle with its steps, washer runs and rule violations (four indexed reads in all)."""
    ids = _list(sorted(set(clean_ids)))
    among = "clean_id IN (SELECT value FROM json_each(?))"
    cycles = {
        row[0]: {
            **dict(zip(CYCLE_COLUMNS, row, strict=True)),
            "steps": [],
            "washers": [],
            "violations": [],
        }
        for row in conn.execute(
            f"SELECT {', '.join(CYCLE_COLUMNS)} FROM rp_cycles WHERE {among}", (ids,)
        )
    }
    parts = (
        ("steps", STEP_COLUMNS, "rp_steps", "id"),
        ("washers", WASHER_COLUMNS, "washer_cycles", "started_at"),
        ("violations", VIOLATION_COLUMNS, "rp_violations", "id"),
    )
    for part, columns, table, order in parts:
        for clean_id, *row in conn.execute(
            f"SELECT clean_id, {', '.join(columns)} FROM {table} WHERE {among} ORDER BY {order}",
            (ids,),
        ):
            cycle = cycles.get(clean_id)
            if cycle is not None:  # rows of a cycle purged by retention are not shown alone
                cycle[part].append(dict(zip(columns, row, strict=True)))
    return cycles


class LookbackAudit:
    """Applies `lookback.run` events: who asked which lookback, kept in the audit trail."""

    name = "lookback-audit"
    kinds = (AUDIT_EVENT,)

    def handle(self, tx: Any, event: Event) -> None:
        """One audit row per lookback run (the raw event stays in the journal as well)."""
        record_audit(tx.conn, event.occurred_at.timestamp(), event.payload)


def record_audit(conn: sqlite3.Connection, at: float, payload: dict[str, Any]) -> None:
    """Write the audit row of one lookback: `payload` has by, via, question and full (bool)."""
    question = payload["question"]
    detail = {"question": question, "via": payload["via"], "full": bool(payload["full"])}
    conn.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (
            at,
            str(payload["by"]),
            "lookback." + str(question["kind"]),
            f"{question['kind']}:{question['subject']}",
            json.dumps(detail, ensure_ascii=False),
        ),
    )


def audit_payload(question: Question, *, by: str, via: str, full: bool) -> dict[str, Any]:
    """The `lookback.run` event's payload (and the CLI's audit row)."""
    return {"by": by, "via": via, "full": full, "question": question.audit_detail()}


def masked(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries with each patient masked (for a screen others may see)."""
    result = []
    for entry in entries:
        use = entry["use"]
        if use is not None:
            use = {
                **use,
                "patient_id": mask_id(use["patient_id"]),
                "patient_name": mask_name(use["patient_name"]),
            }
        result.append({**entry, "use": use})
    return result
