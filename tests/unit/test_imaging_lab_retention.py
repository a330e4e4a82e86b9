"""The imaging index and lab records through the journal's keeper: an image's index row goes a
period after its file was purged (its series, study, patient once empty), exams and lab reports
after their record period with the agent's copies of their files, never while a message that
carries them is open, never a file another record still names; the provincial platform's orders
and the results-sharing daily rows like the messages, expired cached answers at once."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.imaging.index_retention import index_purges
from agent.imaging.index_retention import purges as imaging_purges
from agent.journal.retention import JournalKeeper, Purge, Settings, remove_files
from agent.journal.writer import Journal
from agent.lab.retention import purges as lab_purges
from agent.uplinks.provincial_imaging.orders import order_purges
from agent.uplinks.results_sharing.retention import purges as sharing_purges
from agent.web.files import FileStore
from tests.unit.test_journal import rows

NOW = datetime(2030, 6, 1, tzinfo=UTC)
OLD = (NOW - timedelta(days=400)).isoformat(timespec="microseconds")
LATE = (NOW - timedelta(days=10)).isoformat(timespec="microseconds")
Kind = tuple[float, Callable[[], Purge]]
ANCIENT = (NOW - timedelta(days=1200)).isoformat(timespec="microseconds")


def stored_long_ago(path: Path) -> None:
    """A file the API stored two days ago (the retention leaves files stored lately alone)."""
    path.write_bytes(b"%PDF-" + path.name.encode())
    then = time.time() - 2 * 86400
    os.utime(path, (then, then))


def keeper(journal: Journal, kinds: dict[str, Kind], root: Path | None = None) -> JournalKeeper:
    settings = Settings(days=1096, batch=2, pause=0, vacuum_pages=0)
    return JournalKeeper(journal.run, settings, kinds, clock=NOW.timestamp, files_root=root)


def add_image(
    conn: sqlite3.Connection, sop: str, series: str, study: str, patient: str, purged: str | None
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO im_patients (patient_id, name) VALUES (?, 'DOE^J')", (patient,)
    )
    conn.execute(
        "INSERT OR IGNORE INTO im_studies (study_uid, patient_id, first_received, last_received)"
        " VALUES (?, ?, ?, ?)",
        (study, patient, ANCIENT, ANCIENT),
    )
    conn.execute(
        "INSERT OR IGNORE INTO im_series (series_uid, study_uid, modality) VALUES (?, ?, 'ES')",
        (series, study),
    )
    conn.execute(
        "INSERT INTO im_instances (sop_uid, series_uid, study_uid, sop_class, transfer_syntax,"
        " path, size, received_at, event_id, purged_at)"
        " VALUES (?, ?, ?, '1.2', '1.2.840.10008.1.2.1', ?, 1000, ?, 'e', ?)",
        (sop, series, study, f"2027/01/01/{sop}.dcm", ANCIENT, purged),
    )
    conn.execute(
        "INSERT INTO im_forwarded (uplink, sop_uid, queued_at) VALUES ('remote', ?, ?)",
        (sop, ANCIENT),
    )
    conn.execute(
        "UPDATE im_studies SET instance_count = instance_count + 1 WHERE study_uid = ?", (study,)
    )


def open_message(conn: sqlite3.Connection, order_key: str, event_id: str = "other") -> None:
    conn.execute(
        "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, event_id, state,"
        " created_at, next_attempt_at) VALUES ('remote', 'k', ?, ?, '{}', ?, 'dead', 0, 0)",
        (order_key, f"{order_key}:{event_id}", event_id),
    )


async def test_index_rows_go_a_period_after_their_file_was_purged_with_what_they_emptied(
    open_journal, tmp_path
):
    journal = await open_journal.open()

    def fill(conn: sqlite3.Connection) -> None:
        add_image(conn, "1.1", "S1", "ST1", "P1", OLD)  # the whole study purged long ago
        add_image(conn, "1.2", "S1", "ST1", "P1", OLD)
        add_image(conn, "1.3", "S2", "ST1", "P1", OLD)
        add_image(conn, "2.1", "S3", "ST2", "P2", OLD)  # half its study still on disk
        add_image(conn, "2.2", "S4", "ST2", "P2", None)
        add_image(conn, "3.1", "S5", "ST3", "P3", LATE)  # purged recently: "purged" answers
        add_image(conn, "4.1", "S6", "ST4", "P1", None)  # P1 has another study

    await journal.run(fill)
    kinds = {kind: (365.0, make) for kind, make in index_purges().items()}

    done = await keeper(journal, kinds).run_pass()

    assert done.rows == {"imaging.index": 4}
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT sop_uid FROM im_instances ORDER BY 1") == [("2.2",), ("3.1",), ("4.1",)]
    assert rows(db, "SELECT sop_uid FROM im_forwarded ORDER BY 1") == [("2.2",), ("3.1",), ("4.1",)]
    assert rows(db, "SELECT series_uid FROM im_series ORDER BY 1") == [("S4",), ("S5",), ("S6",)]
    studies = "SELECT study_uid, instance_count FROM im_studies ORDER BY 1"
    assert rows(db, studies) == [("ST2", 1), ("ST3", 1), ("ST4", 1)]
    assert rows(db, "SELECT patient_id FROM im_patients ORDER BY 1") == [("P1",), ("P2",), ("P3",)]


def add_exam(conn: sqlite3.Connection, no: str, updated: str, files: list[str]) -> None:
    conn.execute(
        "INSERT INTO im_exams (exam_no, exam_status, payload, updated_at, event_id)"
        " VALUES (?, '70', '{}', ?, ?)",
        (no, updated, f"ev-{no}"),
    )
    conn.executemany(
        "INSERT INTO im_exam_files (exam_no, name, kind, size, attached_at, event_id, path)"
        " VALUES (?, ?, 'report_pdf', 10, ?, ?, ?)",
        [(no, name, updated, f"ev-{no}", f"exam-files/{name}") for name in files],
    )


async def test_exams_go_after_their_period_with_their_own_files_unless_still_carried(
    open_journal, tmp_path
):
    journal = await open_journal.open()
    files = tmp_path / "exam-files"
    files.mkdir()
    for name in ("a.pdf", "shared.pdf", "b.jpg", "kept.pdf", "lab.pdf"):
        stored_long_ago(files / name)

    def fill(conn: sqlite3.Connection) -> None:
        add_exam(conn, "E1", ANCIENT, ["a.pdf", "shared.pdf"])
        add_exam(conn, "E2", ANCIENT, ["shared.pdf", "b.jpg"])  # shares a file with E3
        add_exam(conn, "E3", LATE, ["shared.pdf"])
        add_exam(conn, "E4", ANCIENT, ["kept.pdf"])  # its report is still dead in the outbox
        open_message(conn, "exam:E4")
        add_exam(conn, "E5", ANCIENT, ["lab.pdf"])  # the same PDF a lab report has
        add_exam(conn, "E6", ANCIENT, [])  # its study's push is still pending
        conn.execute("UPDATE im_exams SET study_uid = '1.2.6' WHERE exam_no = 'E6'")
        open_message(conn, "study:1.2.6")
        conn.execute(
            "INSERT INTO lab_reports (report_no, patient_id, reported_at, record, digest,"
            " updated_at, event_id) VALUES ('L1', 'P', ?, '{}', 'd', ?, 'ev-L1')",
            (LATE, LATE),
        )
        conn.execute(
            "INSERT INTO lab_files (report_no, name, size, attached_at, event_id)"
            " VALUES ('L1', 'lab.pdf', 10, ?, 'ev-L1')",
            (LATE,),
        )
        conn.execute(
            "INSERT INTO im_apply_forms (applycode, form, received_at, event_id)"
            " VALUES ('A-old', '{}', ?, 'e'), ('A-new', '{}', ?, 'e')",
            (ANCIENT, LATE),
        )
        conn.execute(
            "INSERT INTO im_statistics_days (date, last_slot, final)"
            " VALUES ('2026-01-01', '20:00', 1), ('2030-05-30', '20:00', 1)"
        )

    await journal.run(fill)
    kinds = {kind: (1096.0, make) for kind, make in imaging_purges().items()}

    done = await keeper(journal, kinds, root=tmp_path).run_pass()

    assert done.rows == {
        "imaging.exams": 3,
        "imaging.apply_forms": 1,
        "imaging.statistics_days": 1,
    }
    assert done.files == 2
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT exam_no FROM im_exams ORDER BY 1") == [("E3",), ("E4",), ("E6",)]
    assert rows(db, "SELECT exam_no, name FROM im_exam_files ORDER BY 1") == [
        ("E3", "shared.pdf"),
        ("E4", "kept.pdf"),
    ]
    assert sorted(p.name for p in files.iterdir()) == ["kept.pdf", "lab.pdf", "shared.pdf"]
    assert rows(db, "SELECT applycode FROM im_apply_forms") == [("A-new",)]
    assert rows(db, "SELECT date FROM im_statistics_days") == [("2030-05-30",)]


async def test_lab_records_go_after_their_period_unless_an_open_message_carries_them(
    open_journal, tmp_path
):
    journal = await open_journal.open()
    files = tmp_path / "exam-files"
    files.mkdir()
    for name in ("old.pdf", "open.pdf"):
        stored_long_ago(files / name)

    def fill(conn: sqlite3.Connection) -> None:
        for no, at, pdf in (("L-old", ANCIENT, "old.pdf"), ("L-open", ANCIENT, "open.pdf")):
            conn.execute(
                "INSERT INTO lab_reports (report_no, patient_id, reported_at, record, digest,"
                " updated_at, event_id) VALUES (?, 'P', ?, '{}', 'd', ?, ?)",
                (no, at, at, f"ev-{no}"),
            )
            conn.execute(
                "INSERT INTO lab_files (report_no, name, size, attached_at, event_id)"
                " VALUES (?, ?, 10, ?, ?)",
                (no, pdf, at, f"ev-{no}"),
            )
        open_message(conn, "lab:L-open")
        conn.executemany(
            "INSERT INTO lab_records (kind, record_id, record, digest, updated_at, event_id)"
            " VALUES ('qc', ?, '{}', 'd', ?, ?)",
            [("Q-old", ANCIENT, "e1"), ("Q-open", ANCIENT, "e2"), ("Q-new", LATE, "e3")],
        )
        open_message(conn, "unrelated", event_id="e2")  # its message is still pending

    await journal.run(fill)
    kinds = {kind: (1096.0, make) for kind, make in lab_purges().items()}

    done = await keeper(journal, kinds, root=tmp_path).run_pass()

    assert done.rows == {"lab.reports": 1, "lab.records": 1}
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT report_no FROM lab_reports") == [("L-open",)]
    assert rows(db, "SELECT report_no FROM lab_files") == [("L-open",)]
    assert sorted(p.name for p in files.iterdir()) == ["open.pdf"]
    assert rows(db, "SELECT record_id FROM lab_records ORDER BY 1") == [("Q-new",), ("Q-open",)]


async def test_a_file_outside_the_root_or_stored_again_lately_is_never_removed(tmp_path):
    outside = tmp_path / "keep.pdf"
    stored_long_ago(outside)
    folder = tmp_path / "state" / "exam-files"
    folder.mkdir(parents=True)
    stored_long_ago(folder / "a.pdf")
    store = FileStore(folder, 1024)
    again = await store.save(b"%PDF-1.4 report")
    then = time.time() - 2 * 86400
    os.utime(folder / again, (then, then))
    # The API stores the same content again: the file is fresh, a row naming it is on its way.
    assert await store.save(b"%PDF-1.4 report") == again

    paths = ["../keep.pdf", "exam-files/a.pdf", f"exam-files/{again}", "exam-files/gone.pdf"]
    assert remove_files(tmp_path / "state", paths) == 1

    assert [p.name for p in folder.iterdir()] == [again] and outside.exists()


async def test_provincial_orders_go_with_their_messages_period_unless_still_open(
    open_journal, tmp_path
):
    journal = await open_journal.open()
    old, late = (NOW - timedelta(days=1200)).timestamp(), (NOW - timedelta(days=10)).timestamp()

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO pi_orders (uplink, apply_no, action, event_id, posted_at, status_at)"
            " VALUES ('prov', ?, 'INSERT', ?, ?, ?)",
            [
                ("A-old", "ev-1", old, None),
                ("A-dead", "ev-2", old, None),  # its message is still dead: kept
                ("A-status", "ev-3", old, late),  # the platform's status came lately
            ],
        )
        open_message(conn, "order", event_id="ev-2")

    await journal.run(fill)
    kinds = {kind: (1096.0, make) for kind, make in order_purges().items()}

    done = await keeper(journal, kinds).run_pass()

    assert done.rows == {"provincial_imaging.orders": 1}
    kept = rows(tmp_path / "journal.db", "SELECT apply_no FROM pi_orders ORDER BY 1")
    assert kept == [("A-dead",), ("A-status",)]


async def test_expired_answers_and_old_daily_rows_of_results_sharing_go(open_journal, tmp_path):
    journal = await open_journal.open()
    now = NOW.timestamp()

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO rs_query_cache (uplink, query, params_hash, data, fetched_at, expires_at)"
            " VALUES ('rs', 'labs', ?, '[]', ?, ?)",
            [("expired", now - 7200, now - 3600), ("fresh", now - 60, now + 3600)],
        )
        conn.executemany(
            "INSERT INTO rs_daily (uplink, day, state, records, updated_at)"
            " VALUES ('rs', ?, 'complete', 10, ?)",
            [("2026-01-01", ANCIENT), ("2030-05-20", LATE)],
        )

    await journal.run(fill)

    done = await keeper(journal, sharing_purges(1096.0)).run_pass()

    assert done.rows == {"results_sharing.query_cache": 1, "results_sharing.daily": 1}
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT params_hash FROM rs_query_cache") == [("fresh",)]
    assert rows(db, "SELECT day FROM rs_daily") == [("2030-05-20",)]
