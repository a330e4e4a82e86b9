"""The journal of an imaging-heavy site: bytes per image and per exam measured on a sample
journaled by the real imaging handler (events, messages, index, exams), the keeper's pass over
the sample once its images' files were purged long ago, and the file's size after 1, 3, 5 and
10 years at the site's rate with and without the index and exam retention.

Run from the repository root: `.venv/bin/python -m bench.imaging_journal_size` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.imaging.index_retention import index_purges, purges
from agent.journal.retention import JournalKeeper, Settings
from agent.journal.writer import Journal
from bench.ingest import _cpu_model, command_line, cpu_count, record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.imaging_journal_size:begin -->"
END = "<!-- bench.imaging_journal_size:end -->"
T0 = datetime(2027, 3, 1, 1, 0, tzinfo=UTC)
UPLINK = "remote_imaging"
# Table -> what it is counted as: per image (its share of the study's rows included), per exam.
GROUPS = {
    "events": "events",
    "outbox": "messages",
    "im_instances": "index",
    "im_forwarded": "index",
    "im_series": "index",
    "im_studies": "index",
    "im_patients": "index",
    "im_exams": "exams",
    "im_exam_files": "exams",
}


def stored(study: int, n: int, at: datetime) -> Event:
    """A dicom.stored event as the DICOM source emits it."""
    uid = f"1.2.826.0.1.3680043.9.7{study:06d}"
    payload = {
        "path": f"{at:%Y/%m/%d}/{uid}.{n}.dcm",
        "size": 520_000,
        "transfer_syntax": "1.2.840.10008.1.2.4.70",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": f"{uid}.1.{n}",
        "study_uid": uid,
        "series_uid": f"{uid}.1",
        "patient_id": f"P{study:08d}",
        "patient_name": "ZHANG^SAN",
        "patient_birth_date": "19800101",
        "patient_sex": "M",
        "accession_number": f"ACC{study:08d}",
        "study_id": str(study),
        "study_date": f"{at:%Y%m%d}",
        "study_time": "100000",
        "study_description": "CHEST",
        "referring_physician": "",
        "modality": "CT",
        "series_number": 1,
        "series_description": "AXIAL 1.25",
        "body_part": "CHEST",
        "instance_number": n,
        "calling_ae": "CT01",
        "received_via": "c-store",
    }
    return Event("dicom.stored", "pacs", payload, occurred_at=at, received_at=at)


def exam(study: int, at: datetime) -> Event:
    """The exam with its final report, as POST /api/v1/exams journals it."""
    doc = {
        "examNo": f"E{study:08d}",
        "accessionNo": f"ACC{study:08d}",
        "patientInfo": {"sickId": f"P{study:08d}", "name": "张三", "sex": "男",
                        "birthDate": "1980-01-01"},
        "examInfo": {
            "applyNo": f"A{study:08d}", "patientID": f"CT{study:06d}", "examStatus": "70",
            "examTime": f"{at:%Y-%m-%d} 10:00:00", "examClass": "CT",
            "examItemList": [{"itemCode": "CT01", "itemName": "胸部CT平扫"}],
            "examOrganList": [{"organName": "胸部"}], "reqHospitalName": "某某县人民医院",
        },
        "reportList": {"impression": "双肺未见明显异常。" * 8,
                       "reportTime": f"{at:%Y-%m-%d} 11:00:00",
                       "finding": "胸廓对称，气管居中，纵隔无增宽。" * 12},
    }  # fmt: skip
    return Event("imaging.exam", "api", doc, occurred_at=at, received_at=at)


async def journal_sample(journal: Journal, studies: int, per_study: int) -> None:
    """Each study's images (one commit per study), its exam, then the study gone quiet."""
    for s in range(studies):
        at = T0 + timedelta(minutes=5 * s)
        await journal.ingest([stored(s, n, at) for n in range(1, per_study + 1)])
        await journal.ingest([exam(s, at)])
        uid = f"1.2.826.0.1.3680043.9.7{s:06d}"
        last = await journal.run(partial(last_received, uid))
        payload = {"study_uid": uid, "last_received": last}
        quiet = at + timedelta(seconds=61)
        await journal.ingest([Event("imaging.study_stable", "imaging", payload, received_at=quiet)])
    await journal.run(
        lambda c: c.execute(
            "UPDATE outbox SET state = 'delivered', settled_at = ?", (T0.timestamp(),)
        )
    )


def last_received(study_uid: str, conn: sqlite3.Connection) -> str:
    """When the study's latest image arrived (what its quiet event carries)."""
    found: str = conn.execute(
        "SELECT last_received FROM im_studies WHERE study_uid = ?", (study_uid,)
    ).fetchone()[0]
    return found


def sizes(path: Path) -> dict[str, int]:
    """Bytes of each group (tables with their indexes), from SQLite's dbstat."""
    with closing(sqlite3.connect(path)) as conn:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
        found: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            group = GROUPS.get(owner.get(name, name), "other")
            found[group] = found.get(group, 0) + size
    return found


def counts(path: Path) -> dict[str, int]:
    """Rows of the tables the groups count."""
    with closing(sqlite3.connect(path)) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in GROUPS}


async def measure(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Journal the sample; sizes; then purge its images' files (marked) and run the keeper."""
    path = directory / "journal.db"
    config = ImagingConfig.model_validate({"type": "imaging", "forward_to": [UPLINK]})
    journal = await Journal.open(path, [ImagingHandler("imaging", config)])
    try:
        started = time.perf_counter()
        await journal_sample(journal, args.studies, args.per_study)
        generated = time.perf_counter() - started
        before, rows_before = sizes(path), counts(path)
        purged = (T0 + timedelta(days=args.keep_days)).isoformat(timespec="microseconds")
        await journal.run(lambda c: c.execute("UPDATE im_instances SET purged_at = ?", (purged,)))
        now = (T0 + timedelta(days=args.keep_days + args.index_keep_days + 1)).timestamp()
        kinds = {k: (float(args.index_keep_days), m) for k, m in index_purges().items()}
        kinds |= {k: (float(args.record_days), m) for k, m in purges().items()}
        settings = Settings(days=3650.0, batch=args.batch, pause=0.0, vacuum_pages=0)
        keeper = JournalKeeper(journal.run, settings, kinds, clock=lambda: now)
        started = time.perf_counter()
        done = await keeper.run_pass()
        pass_seconds = time.perf_counter() - started
    finally:
        await journal.close()
    return {
        "generated_s": generated,
        "before": before,
        "rows_before": rows_before,
        "rows_after": counts(path),
        "pass_s": pass_seconds,
        "removed": done.rows,
        "writes": done.writes,
        "slowest": max(done.slowest.values()),
    }


def per_year(found: dict[str, Any], args: argparse.Namespace) -> list[tuple[int, ...]]:
    """(years, GB without, GB with the index and exam retention, GB with it and events kept
    only --short-retention-days) at the site's rate."""
    images = args.studies * args.per_study
    size = found["before"]
    per_image = {g: size.get(g, 0) / images for g in ("events", "messages", "index")}
    per_exam = size.get("exams", 0) / args.studies
    a_day = args.images_per_day
    exams_a_day = a_day / args.per_study
    raw = a_day * (per_image["events"] + per_image["messages"])
    out: list[tuple[int, ...]] = []
    for years in (1, 3, 5, 10):
        days = years * 365.25
        common = min(days, args.retention_days) * raw  # [journal] retention_days
        without = common + days * (a_day * per_image["index"] + exams_a_day * per_exam)
        index_days = min(days, args.keep_days + args.index_keep_days)
        kept = (
            index_days * a_day * per_image["index"]
            + min(days, args.record_days) * exams_a_day * per_exam
        )
        short = min(days, args.short_retention_days) * raw + kept
        out.append(
            (years, round(without / 1e9, 1), round((common + kept) / 1e9, 1), round(short / 1e9, 1))
        )
    return out


def report(command: str, args: argparse.Namespace, found: dict[str, Any]) -> str:
    """Render the Markdown section recorded in docs/benchmarks.md."""
    images = args.studies * args.per_study
    size = found["before"]
    rb, ra = found["rows_before"], found["rows_after"]
    line = " | ".join(f"{size.get(g, 0) / images:,.0f}" for g in ("events", "messages", "index"))
    per_exam = size.get("exams", 0) / args.studies
    removed = ", ".join(f"{kind} {n:,}" for kind, n in found["removed"].items())
    table = "\n".join(
        f"| {y} | {w:,.1f} | {r:,.1f} | {short:,.1f} |" for y, w, r, short in per_year(found, args)
    )
    short_head = f"GB with it and `retention_days = {args.short_retention_days}`"
    return f"""{BEGIN}
## Imaging journal size (issue 22)

A sample of {args.studies} CT studies × {args.per_study} images with an exam and its final report
each, journaled by the real imaging handler (`dicom.stored` events one commit per study, the exam,
the study gone quiet, forwarded to one `remote_imaging` uplink, every message delivered); bytes
(index: the instance, its forwarded mark, its share of series/study/patient rows; exam: the exam
with its report and file rows) of each kind of record with its indexes from SQLite's `dbstat`,
divided by the images (an image's share of its study's and series' rows included) or the exams.
Then the images' files are marked purged {args.keep_days} days after they arrived (as the spool
retention does) and one keeper pass runs with `index_keep_days = {args.index_keep_days}` and
`record_days = {args.record_days}` past both. Sizes are extrapolated to a site storing
{args.images_per_day:,} images a day ({args.images_per_day // args.per_study:,} studies of
{args.per_study}): raw events and delivered messages are kept `[journal] retention_days =
{args.retention_days}` either way; without this retention the index and exams grow for ever. The
machine was shared with other sessions' work (loaded); sizes do not depend on it.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()}), SQLite {sqlite3.sqlite_version}
* Sample: {images:,} images journaled in {found["generated_s"]:.0f} s; rows: events
  {rb["events"]:,}, outbox {rb["outbox"]:,}, im_instances {rb["im_instances"]:,}, im_forwarded
  {rb["im_forwarded"]:,}, im_exams {rb["im_exams"]:,}
* Pass: {found["pass_s"]:.1f} s, {found["writes"]:,} transactions of at most {args.batch} rows
  (longest {found["slowest"] * 1000:,.0f} ms); removed {removed}; left: im_instances
  {ra["im_instances"]:,}, im_studies {ra["im_studies"]:,}, im_patients {ra["im_patients"]:,},
  im_exams {ra["im_exams"]:,}

| bytes per image: raw event | delivered messages | index rows | bytes per exam |
|---:|---:|---:|---:|
| {line} | {per_exam:,.0f} |

| years running | GB without index/exam retention | GB with it | {short_head} |
|---:|---:|---:|---:|
{table}

Raw events and delivered messages dominate an imaging site's journal: a site this busy that does
not need 3 years of raw C-STORE events may lower `[journal] retention_days` (the index, exams, lab
and reprocessing records keep their own periods; alerts and the audit trail follow it too).
{END}"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imaging_journal_size", description=__doc__
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the journal goes")
    parser.add_argument("--studies", type=int, default=40, help="studies in the sample (40)")
    parser.add_argument("--per-study", type=int, default=200, help="images a study (200)")
    parser.add_argument(
        "--images-per-day", type=int, default=100_000, help="the site's rate (100,000)"
    )
    parser.add_argument("--keep-days", type=int, default=30, help="spool keep_days (30)")
    parser.add_argument("--index-keep-days", type=int, default=365, help="(365)")
    parser.add_argument("--record-days", type=int, default=1096, help="exams (1096)")
    parser.add_argument("--retention-days", type=int, default=1096, help="[journal] (1096)")
    parser.add_argument("--short-retention-days", type=int, default=90, help="(90)")
    parser.add_argument("--batch", type=int, default=100, help="rows per transaction (100)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="imaging-journal-", dir=args.dir))
    try:
        found = asyncio.run(measure(directory, args))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    section = report(command_line("bench.imaging_journal_size", argv), args, found)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
