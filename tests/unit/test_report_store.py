"""The report store: exams with their records, found by any of their times, inclusive windows."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.imaging.exams import exam_by_number, exams_between, save_exam, study_exams
from agent.journal.database import open_database
from tests.journal_versions import migrate_until
from tests.unit.test_exam_record import EVERY_FIELD

NOON = datetime(2026, 12, 1, 12, 0, 0)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    with closing(open_database(tmp_path / "journal.db")) as connection:
        yield connection


def exam(number: str, **info: Any) -> dict[str, Any]:
    document = {
        "examNo": number,
        "patientInfo": {"sickId": f"P{number}", "name": "张三", "sex": "男"},
        "examInfo": {
            "applyNo": "A1",
            "examStatus": "50",
            "examTime": "2026-12-01 09:00:00",
            "examClass": "CT",
            "examItemList": [{"itemName": "胸部CT"}],
            "examOrganList": [{"organName": "胸部"}],
            **info,
        },
    }
    return document


def save(
    conn: sqlite3.Connection, document: dict[str, Any], at: datetime = NOON, **join: Any
) -> None:
    save_exam(
        conn,
        document,
        accession=join.get("accession", ""),
        study_uid=join.get("study_uid"),
        received=at,
        event_id="e",
        updated_at=at.isoformat(),
    )


def numbers(records: list[Any]) -> list[str]:
    return [r["exam_no"] for r in records]


def test_windows_are_inclusive_at_both_ends_for_each_time(conn):
    save(conn, exam("E1", examTime="2026-12-01 08:00:00"))
    save(conn, exam("E2", examTime="2026-12-01 09:00:00"))
    save(conn, exam("E3", examTime="2026-12-01 10:00:00"))

    def window(start: str, end: str, limit: int = 10) -> list[str]:
        return numbers(exams_between(conn, "exam_at", f"2026-12-{start}", f"2026-12-{end}", limit))

    assert window("01T08:00:00", "01T09:00:00") == ["E1", "E2"]
    assert window("01T09:00:01", "02T00:00:00") == ["E3"]
    assert window("01T00:00:00", "02T00:00:00", limit=2) == ["E1", "E2"]


def test_every_time_of_an_exam_is_a_way_to_find_it(conn):
    save(conn, copy.deepcopy(EVERY_FIELD), at=datetime(2026, 12, 4, 8, 0, 0))
    expected = {
        "exam_at": "2026-12-01T09:30:00",
        "registered_at": "2026-12-01T08:10:00",
        "written_at": "2026-12-01T11:00:00",
        "audited_at": "2026-12-01T12:00:00",
        "refunded_at": "2026-12-02T10:00:00",
        "cancelled_at": "2026-12-03T08:00:00",
        "modified_at": "2026-12-04T08:00:00",
    }
    for field, moment in expected.items():
        assert numbers(exams_between(conn, field, moment, moment, 10)) == ["E1"], field  # type: ignore[arg-type]
        earlier = exams_between(conn, field, "2000-01-01T00:00:00", "2026-11-30T23:59:59", 10)  # type: ignore[arg-type]
        assert earlier == []
    with pytest.raises(ValueError, match="is not a time of the report store"):
        exams_between(conn, "payload", "a", "b", 1)  # type: ignore[arg-type]


def test_a_refunded_item_finds_its_exam_by_the_latest_refund(conn):
    items = [
        {"itemName": "胸部CT", "refundTime": "2026-12-02 10:00:00"},
        {"itemName": "腹部CT", "refundTime": "2026-12-03 11:00:00"},
        {"itemName": "头部CT"},
    ]
    save(conn, exam("E1", examItemList=items))
    save(conn, exam("E2"))
    found = exams_between(conn, "refunded_at", "2026-12-03T00:00:00", "2026-12-03T23:59:59", 10)
    assert numbers(found) == ["E1"]
    assert [i.get("refunded_at") for i in found[0]["order"]["items"]] == [
        "2026-12-02T10:00:00",
        "2026-12-03T11:00:00",
        None,
    ]


def test_modified_is_when_the_report_or_status_last_changed(conn):
    def modified() -> Any:
        row = conn.execute("SELECT modified_at FROM im_exams WHERE exam_no = 'E1'").fetchone()
        return row[0]

    document = exam("E1")
    save(conn, document, at=datetime(2026, 12, 1, 9, 0))
    assert modified() is None  # no report yet
    document["reportList"] = {"impression": "未见异常"}
    document["examInfo"]["examStatus"] = "60"
    save(conn, document, at=datetime(2026, 12, 1, 10, 0))
    assert modified() == "2026-12-01T10:00:00"
    document["patientInfo"]["age"] = "45岁"  # not the report: the time stays
    save(conn, document, at=datetime(2026, 12, 1, 11, 0))
    assert modified() == "2026-12-01T10:00:00"
    document["examInfo"]["examStatus"] = "70"  # audited: same text, a new state
    save(conn, document, at=datetime(2026, 12, 1, 12, 0))
    assert modified() == "2026-12-01T12:00:00"
    document["reportList"]["impression"] = "右下肺炎"
    save(conn, document, at=datetime(2026, 12, 2, 8, 30))
    assert modified() == "2026-12-02T08:30:00"


def test_an_exam_is_found_by_its_number_or_its_accession(conn):
    save(conn, exam("E1"), accession="ACC1", study_uid="1.2.3")
    save(conn, exam("E2"), accession="ACC2")
    one = exam_by_number(conn, "E1")
    assert one is not None and (one["accession"], one["study_uid"]) == ("ACC1", "1.2.3")
    two = exam_by_number(conn, "ACC2")
    assert two is not None and two["exam_no"] == "E2"
    assert exam_by_number(conn, "nothing") is None
    ((number, document, record),) = study_exams(conn, "1.2.3")
    assert number == "E1" and document["examNo"] == "E1" and record["patient"]["id"] == "PE1"


def test_exams_stored_before_the_report_store_keep_their_times_and_get_a_record(tmp_path):
    path = tmp_path / "journal.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as old:
        migrate_until(old, below=10)
        document = exam("E1", examTime="2026-11-30 08:00:00", examStatus="70")
        document["reportList"] = {"affirmTime": "2026-11-30 09:00:00", "impression": "未见异常"}
        old.execute(
            "INSERT INTO im_exams (exam_no, apply_no, accession, study_uid, exam_status,"
            " exam_class, exam_date, payload, updated_at, event_id)"
            " VALUES ('E1', 'A1', 'ACC1', NULL, '70', 'CT', '2026-11-30', ?, 'x', 'e')",
            (json.dumps(document, ensure_ascii=False),),
        )
    with closing(open_database(path)) as conn:
        audit, exam_time = "2026-11-30T09:00:00", "2026-11-30T08:00:00"
        (found,) = exams_between(conn, "audited_at", audit, audit, 5)
        assert found["exam_no"] == "E1" and found["accession"] == "ACC1"
        assert found["report"]["impression"] == "未见异常" and found["status"] == "final"
        assert numbers(exams_between(conn, "exam_at", exam_time, exam_time, 5)) == ["E1"]
