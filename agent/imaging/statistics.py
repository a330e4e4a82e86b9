"""Daily statistics: which dates a slot reports, and the counts per date, hospital and class."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from typing import Any

FINAL_REPORT = "70"
MAX_CATCH_UP_DAYS = 31  # dates a slot reports again after the agent was down (oldest dropped)


def days_to_report(conn: sqlite3.Connection, day: date, slot: str, window: int) -> list[str]:
    """The dates the slot (`day`, `slot`) reports, oldest first, and records it as reported.

    The `window` dates ending at `day`, plus every date since the oldest one no later slot has
    reported yet: the first slot of a date also sends the previous date's final counts, and a
    date the agent was down for entirely is reported by the next slot (at most 31 dates back).
    The very first slot also reports the previous date if it has exams (posted after its slots).
    """
    earliest = day - timedelta(days=MAX_CATCH_UP_DAYS - 1)
    dates = {day - timedelta(days=n) for n in range(window)}
    oldest = conn.execute(
        "SELECT MIN(date) FROM im_statistics_days WHERE final = 0 AND date < ?",
        (day.isoformat(),),
    ).fetchone()[0]
    yesterday = (day - timedelta(days=1)).isoformat()
    if oldest is None and not has_reported(conn) and _has_exams(conn, yesterday):
        oldest = yesterday
    if oldest is not None:
        start = max(date.fromisoformat(oldest), earliest)
        dates |= {start + timedelta(days=n) for n in range((day - start).days)}
    reported = sorted(d.isoformat() for d in dates if d >= earliest)
    conn.executemany(
        "INSERT INTO im_statistics_days (date, last_slot, final) VALUES (?, ?, ?)"
        " ON CONFLICT (date) DO UPDATE SET last_slot = excluded.last_slot,"
        " final = MAX(final, excluded.final)",
        [(d, slot, int(d < day.isoformat())) for d in reported],
    )
    conn.execute(
        "UPDATE im_statistics_days SET final = 1 WHERE date < ? AND final = 0",
        (earliest.isoformat(),),
    )
    return reported


def counts(conn: sqlite3.Connection, days: list[str]) -> list[dict[str, Any]]:
    """Per date, hospital (when the exam names one) and exam class: exams with an apply number
    and a final report (`accordCount`); classes with exams but none final count 0."""
    items: list[dict[str, Any]] = []
    for day in days:
        for hospital, exam_class, count in conn.execute(
            "SELECT hospital_code, exam_class, SUM(apply_no != '' AND exam_status = ?)"
            " FROM im_exams WHERE exam_date = ? GROUP BY hospital_code, exam_class"
            " ORDER BY hospital_code, exam_class",
            (FINAL_REPORT, day),
        ):
            item: dict[str, Any] = {"examDate": day, "examClass": exam_class, "accordCount": count}
            if hospital:
                item["hospitalCode"] = hospital
            items.append(item)
    return items


def has_reported(conn: sqlite3.Connection) -> bool:
    """Whether any statistics slot was ever handled (a first start catches nothing up)."""
    return conn.execute("SELECT 1 FROM im_statistics_days LIMIT 1").fetchone() is not None


def has_exams(conn: sqlite3.Connection) -> bool:
    """Whether the domain holds any exam (a first start with none catches no slot up)."""
    return conn.execute("SELECT 1 FROM im_exams LIMIT 1").fetchone() is not None


def _has_exams(conn: sqlite3.Connection, day: str) -> bool:
    found = conn.execute("SELECT 1 FROM im_exams WHERE exam_date = ? LIMIT 1", (day,)).fetchone()
    return found is not None
