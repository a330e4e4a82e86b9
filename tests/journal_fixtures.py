"""Journals as each shipped schema version left them, with representative rows, as SQL text.

`python -m tests.journal_fixtures` (re)writes tests/fixtures/journal/vN.sql for every version
below the latest: migrations v1..vN applied one by one, each followed by the rows an agent of
that version wrote (so later migrations find them, as on a real site). Small, readable, diffable.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.journal.database import latest_version, migrations, split_statements

FOLDER = Path(__file__).parent / "fixtures" / "journal"
SPOOL_FILE = "/var/lib/edge-agent/spool/2026/11/24/0192a6e4-7c1d.dcm"  # as v5..v10 stored it
REPORT_FILE = "/var/lib/edge-agent/exam-files/cd.jpg"  # as v14, v15 stored a report image
PATIENT = "PAT-20261123-0042"
CLEAN_ID = "GIF-001-20261123090000-1"
T = "2026-11-23T01:00:00+00:00"
STAMP = 1795395600.0  # 2026-11-23T01:00:00Z

# The rows an agent of each version wrote (only its own tables and columns).
ROWS: dict[int, list[str]] = {
    1: [
        "INSERT INTO events (id, kind, source, occurred_at, received_at, payload) VALUES"
        f" ('0192a6e4-0000-7000-8000-000000000001', 'rfid.read', 'R1', '{T}', '{T}',"
        ' \'{"reader_id": "R1", "tag": "00D507D0"}\')',
        "INSERT INTO events (id, kind, source, occurred_at, received_at, payload) VALUES"
        f" ('0192a6e4-0000-7000-8000-000000000002', 'rfid.read', 'R9', '{T}', '{T}',"
        f' \'{{"reader_id": "R9", "tag": "{PATIENT}"}}\')',
        "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, state, created_at,"
        f" next_attempt_at, settled_at) VALUES ('zj', 'uploadReadData', 'scope:GIF-001', 'r1',"
        f" '{{}}', 'delivered', {STAMP}, {STAMP}, {STAMP})",
        "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, created_at,"
        f" next_attempt_at) VALUES ('zj', 'uploadUseStepData', 'scope:GIF-001', 'u1',"
        f' \'{{"patient_id": "{PATIENT}"}}\', {STAMP}, {STAMP})',
        "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, state, created_at,"
        " next_attempt_at, last_error) VALUES ('zj', 'sterProcess', 'scope:CF-002', 's1', '{}',"
        f" 'dead', {STAMP}, {STAMP}, 'HTTP 422: cleanId')",
        "INSERT INTO uplink_state (uplink, updated_at) VALUES ('zj', 0)",
        "INSERT INTO handler_failures (event_id, handler, error, at) VALUES"
        f" ('0192a6e4-0000-7000-8000-000000000001', 'endo', 'KeyError: tag', {STAMP})",
        f"INSERT INTO audit (at, actor, action, target) VALUES ({STAMP}, 'li', 'outbox.retry',"
        " 'outbox:3')",
    ],
    2: [
        f"INSERT INTO rp_scopes (number, clean_id, cycle_seq, cycle_state, last_use_at) VALUES"
        f" ('GIF-001', '{CLEAN_ID}', 1, 'used', '{T}')",
        "INSERT INTO rp_cycles (clean_id, scope, opened_at, used_at, patient_id, opened_by)"
        f" VALUES ('{CLEAN_ID}', 'GIF-001', '{T}', '{T}', '{PATIENT}',"
        " '0192a6e4-0000-7000-8000-000000000001')",
        "INSERT INTO rp_steps (clean_id, station, step_id, kind, operator, started_at, ended_at)"
        f" VALUES ('{CLEAN_ID}', 'R1', 1, 'pre_clean', '王护士', '{T}', '{T}')",
        "INSERT INTO rp_readers (reader, operator_id, operator_name)"
        " VALUES ('R1', 'N001', '王护士')",
    ],
    3: [
        "INSERT INTO alerts (at, severity, code, subject, message, origin) VALUES"
        f" ({STAMP}, 'critical', 'scope_not_reprocessed', 'scope:GIF-001', '未清洗', 'event:2')",
    ],
    4: [
        "UPDATE rp_cycles SET compliance = 'compliant', completed_at = opened_at",
        "UPDATE rp_steps SET ratio_number = 'OPA-2611-01'",
        "INSERT INTO washer_cycles (washer, cycle_number, started_at, ended_at, scope, clean_id,"
        f" result, event_id) VALUES ('W1', '1024', '{T}', '{T}', 'GIF-001', '{CLEAN_ID}', 'pass',"
        " 'e-w1')",
        "INSERT INTO rp_violations (clean_id, rule, clause, severity, message, at) VALUES"
        f" ('{CLEAN_ID}', 'final_rinse_time', '6.4', 'error', 'rinse too short', '{T}')",
        "INSERT INTO quality_tests (kind, subject, tested_at, passed, recorded_by, payload,"
        f" event_id) VALUES ('disinfectant', 'OPA-2611-01', '{T}', 1, 'li', '{{}}', 'e-q1')",
        "INSERT INTO alert_routes (uplink) VALUES ('bus')",
    ],
    5: [
        "INSERT INTO im_patients (patient_id, name) VALUES ('P001', '张^三')",
        "INSERT INTO im_studies (study_uid, patient_id, accession, instance_count,"
        f" first_received, last_received, state) VALUES ('1.2.3', 'P001', 'A1', 1, '{T}', '{T}',"
        " 'stable')",
        "INSERT INTO im_series (series_uid, study_uid, modality) VALUES ('1.2.3.1', '1.2.3', 'CT')",
        "INSERT INTO im_instances (sop_uid, series_uid, study_uid, sop_class, transfer_syntax,"
        " path, size, received_at, event_id) VALUES ('1.2.3.1.1', '1.2.3.1', '1.2.3',"
        f" '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', '{SPOOL_FILE}', 1024, '{T}',"
        " 'e-i1')",
        "INSERT INTO im_exams (exam_no, accession, study_uid, exam_status, payload, updated_at,"
        " event_id) VALUES ('E001', 'A1', '1.2.3', '70', '{\"patientInfo\": {\"sickId\": \"P001\"},"
        ' "examInfo": {"examTime": "2026-11-23 10:00:00"}}\','
        f" '{T}', 'e-x1')",
        "INSERT INTO im_forwarded (uplink, sop_uid, queued_at)"
        f" VALUES ('city', '1.2.3.1.1', '{T}')",
        "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, created_at,"
        " next_attempt_at) VALUES ('city', 'dicom.instance', 'study:1.2.3', 'dicom.instance:1',"
        f' \'{{"path": "{SPOOL_FILE}", "sop_uid": "1.2.3.1.1"}}\', {STAMP}, {STAMP})',
    ],
    6: ["INSERT INTO publish_routes (subject, uplink) VALUES ('scope.state', 'bus')"],
    8: ["UPDATE handler_failures SET attempts = 2"],
    9: [
        "INSERT INTO alert_snoozes (code, subject, until, by, reason, at) VALUES"
        f" ('ws507.batch_monitoring', 'batch:OPA-2611-01', {STAMP + 86400}, 'li', 'strips',"
        f" {STAMP})"
    ],
    10: [
        "INSERT INTO im_exam_files (exam_no, name, kind, size, attached_at, event_id) VALUES"
        f" ('E001', 'ab.pdf', 'report_pdf', 10, '{T}', 'e-f1')",
    ],
    14: [
        "INSERT INTO im_exam_files (exam_no, name, kind, size, attached_at, event_id, path)"
        f" VALUES ('E001', 'cd.jpg', 'report_image', 10, '{T}', 'e-f2', '{REPORT_FILE}')",
        "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, created_at,"
        " next_attempt_at) VALUES ('city', 'report.image', 'study:1.2.3', 'report.image:1',"
        f' \'{{"path": "{REPORT_FILE}", "name": "cd.jpg"}}\', {STAMP}, {STAMP})',
    ],
}


def build(conn: sqlite3.Connection, upto: int) -> None:
    """Apply v1..v`upto`, each followed by the rows its agent wrote."""
    for version, sql in migrations():
        if version > upto:
            break
        for statement in split_statements(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
        for statement in ROWS.get(version, []):
            conn.execute(statement)


def dump(upto: int) -> str:
    """The journal a v`upto` agent left, as SQL text that recreates it."""
    with sqlite3.connect(":memory:") as conn:
        build(conn, upto)
        lines = [
            f"-- A v{upto} journal (tests/journal_fixtures.py)",
            f"PRAGMA user_version={upto};",
        ]
        lines += list(conn.iterdump())
    return "\n".join(lines) + "\n"


def load(path: Path, database: Path) -> int:
    """Recreate the fixture at `path` as the database file `database`; its version."""
    text = path.read_text(encoding="utf-8")
    with sqlite3.connect(database) as conn:
        conn.executescript(text)
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for version in range(1, latest_version()):
        (FOLDER / f"v{version}.sql").write_text(dump(version), encoding="utf-8", newline="\n")
        print(f"wrote {FOLDER / f'v{version}.sql'}")


if __name__ == "__main__":
    main()
