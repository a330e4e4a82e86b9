"""Every shipped schema version migrates to the current one with its data in it (issue 22)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.journal.alerts import open_alerts
from agent.journal.database import latest_version, migrations, open_database, split_statements
from agent.observe import outbox_counts
from agent.reprocessing.lookback import Question, answer
from agent.reprocessing.state import scope_states
from tests.journal_fixtures import CLEAN_ID, FOLDER, PATIENT, load

FIXTURES = sorted(FOLDER.glob("v*.sql"), key=lambda p: int(re.sub(r"\D", "", p.stem)))


def test_there_is_a_fixture_of_every_version_before_the_current_one():
    found = [int(path.stem[1:]) for path in FIXTURES]
    assert found == list(range(1, latest_version())), "run: python -m tests.journal_fixtures"


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_a_journal_of_each_version_migrates_with_its_data(fixture: Path, tmp_path):
    version = load(fixture, tmp_path / "journal.db")
    conn = open_database(tmp_path / "journal.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2
        by_state = dict(conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        counts, _ = outbox_counts(conn)  # v7's tallies agree with the rows they count
        tallied: dict[str, int] = {}
        for states in counts.values():
            for state, n in states.items():
                tallied[state] = tallied.get(state, 0) + n
        assert tallied == by_state and by_state["delivered"] == 1 and by_state["dead"] == 1
        assert conn.execute("SELECT attempts FROM handler_failures").fetchone()[0] >= 1
        if version >= 2:  # the use its cycle kept is a lookback row (v11)
            (entry,) = answer(conn, Question("patient", PATIENT))
            assert entry["use"]["scope"] == "GIF-001" and entry["cycle"]["clean_id"] == CLEAN_ID
            assert scope_states(conn)[0]["clean_id"] == CLEAN_ID
        if version >= 3:
            assert [a["code"] for a in open_alerts(conn)] == ["scope_not_reprocessed"]
        if version >= 5:  # spool paths relative to the spool, queued images say so too (v11)
            path = conn.execute("SELECT path FROM im_instances").fetchone()[0]
            assert path == "2026/11/24/0192a6e4-7c1d.dcm"
            purged = conn.execute("SELECT purged_at FROM im_instances").fetchone()[0]
            assert purged is None  # every image migrated keeps its file (v12: spool retention)
            (payload,) = conn.execute(
                "SELECT payload FROM outbox WHERE kind = 'dicom.instance'"
            ).fetchone()
            assert json.loads(payload)["spool_path"] == path
            exam = conn.execute("SELECT patient_id, exam_at FROM im_exams").fetchone()
            assert exam == ("P001", "2026-11-23T10:00:00")  # v10 read them from the document
        if version >= 14:  # report files relative to the state folder, queued ones say so (v16)
            paths = dict(conn.execute("SELECT name, path FROM im_exam_files"))
            assert paths == {"ab.pdf": None, "cd.jpg": "exam-files/cd.jpg"}
            (payload,) = conn.execute(
                "SELECT payload FROM outbox WHERE kind = 'report.image'"
            ).fetchone()
            assert json.loads(payload)["state_path"] == "exam-files/cd.jpg"
    finally:
        conn.close()


WINDOWS = {  # as a Windows agent stored them, and what the index keeps after the migration
    r"C:\ProgramData\edge-agent\spool\2026\11\24\a.dcm": "2026/11/24/a.dcm",
    r"D:\state\spool\2025\01\02\sub\b.dcm": "2025/01/02/sub/b.dcm",
    r"\\nas\share\edge\spool\2026\11\24\c.dcm": "2026/11/24/c.dcm",
    "C:/ProgramData/edge-agent/spool/2026/11/24/d.dcm": "2026/11/24/d.dcm",
    r"C:\elsewhere\e.dcm": r"C:\elsewhere\e.dcm",  # not in a spool: left as it is
    r"C:\spool\x\spool\2026\11\24\f.dcm": r"C:\spool\x\spool\2026\11\24\f.dcm",  # ambiguous
    "2026/11/24/g.dcm": "2026/11/24/g.dcm",  # relative already
}


def test_windows_absolute_spool_paths_become_relative_as_posix_ones_did(tmp_path):
    conn = open_database(tmp_path / "journal.db")
    # The migration holding the Windows conversion, found by what it does (the lead may
    # renumber it); each of its statements can run again.
    (sql,) = [sql for _, sql in migrations() if r"replace(path, '\', '/')" in sql]
    try:
        for n, stored in enumerate(WINDOWS):
            conn.execute(
                "INSERT INTO im_instances (sop_uid, series_uid, study_uid, sop_class,"
                " transfer_syntax, path, size, received_at, calling_ae, event_id)"
                " VALUES (?, 's', 't', 'c', 'ts', ?, 1, '2026-11-24', 'AE', 'e')",
                (f"1.{n}", stored),
            )
            conn.execute(
                "INSERT INTO im_deleted (sop_uid, series_uid, study_uid, path, deleted_at,"
                " event_id) VALUES (?, 's', 't', ?, '2026-11-25', 'e')",
                (f"1.{n}", stored),
            )
            conn.execute(
                "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, created_at,"
                " next_attempt_at) VALUES ('city', 'dicom.instance', 'k', ?, ?, 1, 1)",
                (f"d{n}", json.dumps({"path": stored, "sop_uid": f"1.{n}"})),
            )
        for statement in split_statements(sql):
            conn.execute(statement)

        expected = list(WINDOWS.values())
        assert [r[0] for r in conn.execute("SELECT path FROM im_instances ORDER BY sop_uid")] == (
            expected
        )
        assert [r[0] for r in conn.execute("SELECT path FROM im_deleted ORDER BY sop_uid")] == (
            expected
        )
        queued = [json.loads(r[0]) for r in conn.execute("SELECT payload FROM outbox ORDER BY id")]
        converted = [p.get("spool_path") for p in queued[:4]]
        assert converted == expected[:4]  # undelivered images say where they are in the spool
        assert [p.get("spool_path") for p in queued[4:6]] == [None, None]
    finally:
        conn.close()
