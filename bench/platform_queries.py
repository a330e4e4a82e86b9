"""Seed 004's report-information queries over years of a busy hospital, beside the same SELECT
run bare in SQLite in the same run.

Run from the repository root: `.venv/bin/python -m bench.platform_queries` (see `--help`). It
builds a journal of `--exams` exams over `--days` days (stored as the imaging domain stores them),
then times the report service's work for a one-day window of each type and for an exam number:
the query through the report store and the answer's mapping (report.toml, dictionaries) — all
but the HTTP round trip. It prints a table and records it in docs/benchmarks.md; it asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.imaging.exams import QUERIES, save_exam
from agent.imaging.instances import QUERIES as IMAGES
from agent.journal.database import open_database
from agent.uplinks.insurance_imaging.config import ReportService
from agent.uplinks.insurance_imaging.report_service import Query, ReportInfoService
from agent.vocabulary.exams import TimeField
from bench.ingest import _cpu_model, command_line, record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.platform_queries:begin -->"
END = "<!-- bench.platform_queries:end -->"
FIRST_DAY = datetime(2024, 1, 1)


def document(n: int, day: datetime, rng: random.Random) -> dict[str, Any]:
    """A realistic exam: patient, two items (one refunded now and then), an audited report."""
    at = day + timedelta(minutes=rng.randrange(8 * 60, 18 * 60))
    text = "右下肺见斑片状影，边界模糊。" * rng.randrange(2, 6)
    items = [{"itemCode": f"CT{n % 50:02d}", "itemName": "胸部CT平扫", "itemCharge": "200"}]
    if rng.random() < 0.03:
        items[0]["refundTime"] = f"{at + timedelta(hours=2):%Y-%m-%d %H:%M:%S}"
    written, audited = at + timedelta(hours=1), at + timedelta(hours=2)
    return {
        "examNo": f"E{n:08d}",
        "accessionNo": f"ACC{n:08d}",
        "patientInfo": {"sickId": f"P{n // 3:07d}", "name": "张三", "sex": "男", "age": "46岁",
                        "patientSource": "门诊", "chargeType": "0"},
        "examInfo": {"applyNo": f"A{n:08d}", "examStatus": "70", "examClass": "CT",
                     "examTime": f"{at:%Y-%m-%d %H:%M:%S}", "examItemList": items,
                     "examOrganList": [{"organName": "胸部"}], "reqDeptName": "呼吸内科"},
        "reportList": {"description": text, "impression": "右下肺炎症。", "abNormalFlag": "1",
                       "reporter": "赵医生", "reportTime": f"{written:%Y-%m-%d %H:%M:%S}",
                       "affirmReporter": "钱医生", "affirmTime": f"{audited:%Y-%m-%d %H:%M:%S}"},
    }  # fmt: skip


def build(path: Path, exams: int, days: int) -> None:
    """A journal with `exams` exams spread evenly over `days` days."""
    rng = random.Random(4)
    conn = open_database(path)
    conn.execute("BEGIN")
    for n in range(exams):
        day = FIRST_DAY + timedelta(days=n * days // exams)
        received = day + timedelta(hours=20)
        save_exam(conn, document(n, day, rng), accession=f"ACC{n:08d}", study_uid=None,
                  received=received, event_id=f"e{n}", updated_at=received.isoformat())  # fmt: skip
    conn.execute("COMMIT")
    conn.close()


def timings(run: Callable[[], int], times: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, records of the last run) of `times` runs."""
    spent, found = [], 0
    for _ in range(times):
        start = time.perf_counter()
        found = run()
        spent.append((time.perf_counter() - start) * 1000)
    spent.sort()
    return statistics.median(spent), spent[min(len(spent) - 1, int(len(spent) * 0.99))], found


def measure(path: Path, exams: int, days: int, times: int) -> list[list[str]]:
    conn = sqlite3.connect(path)
    service = ReportInfoService(ReportService(), "H33010200001", QUERIES, IMAGES, None)
    rng = random.Random(9)

    def window(field: TimeField) -> tuple[str, str]:
        day = FIRST_DAY + timedelta(days=rng.randrange(days))
        return f"{day:%Y-%m-%dT00:00:00}", f"{day:%Y-%m-%dT23:59:59}"

    def answer(query: Query) -> int:
        found = service.find(conn, query)
        return len([service.answer_record(record, images) for record, images in found])

    def bare(sql: str, *params: Any) -> int:
        return len([json.loads(row[0]) for row in conn.execute(sql, params)])

    rows = []
    types: list[tuple[str, TimeField]] = [
        ("1 exam time", "exam_at"),
        ("3 audit time", "audited_at"),
        ("4 last change", "modified_at"),
        ("2 refund time", "refunded_at"),
    ]
    for kind, field in types:

        def ours_once(f: TimeField = field) -> int:
            return answer(Query(f, *window(f)))

        def bare_once(f: TimeField = field) -> int:
            return bare(f"SELECT record FROM im_exams WHERE {f} BETWEEN ? AND ?", *window(f))

        rows.append(
            _row(f"type {kind}, one day", timings(ours_once, times), timings(bare_once, times))
        )

    def number() -> str:
        return f"E{rng.randrange(exams):08d}"

    def ours_by_number() -> int:
        return answer(Query(exam_number=number()))

    def bare_by_number() -> int:
        return bare("SELECT record FROM im_exams WHERE exam_no = ?", number())

    ours, ref = timings(ours_by_number, times), timings(bare_by_number, times)
    rows.append(_row("by exam number", ours, ref))
    conn.close()
    return rows


def _row(label: str, ours: tuple[float, float, int], ref: tuple[float, float, int]) -> list[str]:
    return [label, f"{ours[2]}", f"{ours[0]:.2f}", f"{ours[1]:.2f}", f"{ref[0]:.2f}",
            f"{ref[1]:.2f}", f"{ours[1] / ref[1]:.1f}×"]  # fmt: skip


def report(command: str, exams: int, days: int, build_s: float, rows: list[list[str]]) -> str:
    lines = [
        BEGIN,
        "## Seed 004 report queries (insurance imaging cloud, 4.1.2)",
        "",
        f"A journal of {exams:,} exams over {days} days ({exams / days:,.0f} a day, every one",
        "audited, 3 % with a refunded item), stored as the imaging domain stores them. Each row:",
        "the report service's work for a random one-day window of a type, or an exam number —",
        "the report store's query and the answer mapped by report.toml with the dictionaries,",
        "all but HTTP — beside the bare `SELECT record … BETWEEN` (or `= exam_no`) with",
        "json.loads, in the same run. Targets (issue 17): p99 ≤ 50 ms for a day of ~300 exams,",
        "≤ 5 ms by exam number.",
        "",
        f"* Command: `{command}`",
        f"* Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; journal built in {build_s:.0f} s",
        f"* Machine: nproc {os.cpu_count()} ({_cpu_model()}), Python {sys.version.split()[0]}",
        "",
        "| query | exams answered | p50 ms | p99 ms | bare SQLite p50 ms | p99 ms | p99 × bare |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in rows),
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.platform_queries", description=__doc__)
    parser.add_argument("--exams", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=3 * 365)
    parser.add_argument("--times", type=int, default=200, help="runs of each query")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "journal.db"
        start = time.perf_counter()
        build(path, args.exams, args.days)
        build_s = time.perf_counter() - start
        rows = measure(path, args.exams, args.days, args.times)
    command = command_line("bench.platform_queries", argv)
    section = report(command, args.exams, args.days, build_s, rows)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
