"""Journal retention and size: a busy endoscopy centre's journal holding more than the retention
keeps (by default 3 years and 30 days: the catch-up after a month without purging), purged by
the agent's keeper (batches, pauses, incremental vacuum) while events keep arriving; intake
commit latency during the pass beside the same intake without it, same run; the file's size
before and after (what 3 years of a busy site keep on disk).

Run from the repository root: `.venv/bin/python -m bench.journal_retention` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.events import Event
from agent.journal.database import open_database
from agent.journal.retention import JournalKeeper, Settings
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from agent.reprocessing.retention import purges
from bench.ingest import _cpu_model, _display, command_line, cpu_count, filesystem, record
from bench.lookback import SCOPES_DEFAULT, START, fill, p99

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.journal_retention:begin -->"
END = "<!-- bench.journal_retention:end -->"


class Tap:
    """A handler as the domains are: one outbox message per event, in the same commit."""

    name = "bench"
    kinds = ("bench.tap",)

    def handle(self, tx: Transaction, event: Event) -> None:
        tx.enqueue(
            uplink="zj",
            kind="uploadReadData",
            order_key=event.source,
            dedupe_key=event.id,
            payload={"tag": event.payload["tag"], "at": event.occurred_at.isoformat()},
        )


async def intake(journal: Journal, rate: float, until: asyncio.Task[Any] | float) -> list[float]:
    """Ingest one event at a time, `rate` a second, until the task is done (or for `until` s);
    each ingest's seconds (the commit an acknowledgement waits for)."""
    found: list[float] = []
    stop_at = until if isinstance(until, float) else None
    started = time.perf_counter()
    n = 0
    while True:
        if stop_at is not None and time.perf_counter() - started >= stop_at:
            return found
        if isinstance(until, asyncio.Task) and until.done():
            return found
        n += 1
        event = Event("bench.tap", f"R{n % 9}", {"tag": f"TAG-{n:06d}"})
        begin = time.perf_counter()
        await journal.ingest([event])
        found.append(time.perf_counter() - begin)
        await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - begin)))


def shape(path: Path) -> dict[str, int]:
    """Pages in use and free, and rows of the big tables, of the journal at `path`."""
    with closing(sqlite3.connect(path)) as conn:
        found = {
            name: conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
            for name in ("events", "outbox", "rp_cycles", "rp_steps", "rp_uses", "washer_cycles")
        }
        found["pages"] = conn.execute("PRAGMA page_count").fetchone()[0]
        found["free_pages"] = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return found


async def measure(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fill, then intake alone, then intake during one retention pass; sizes around them."""
    path = directory / "journal.db"
    conn = open_database(path)  # a journal created by this build: incremental auto-vacuum
    started = time.perf_counter()
    fill(conn, args.days, args.uses_per_day, args.scopes)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    generated = time.perf_counter() - started
    before, size_before = shape(path), path.stat().st_size
    now = (START + timedelta(days=args.days)).timestamp()
    settings = Settings(
        days=args.keep_days, batch=args.batch, pause=args.pause, vacuum_pages=args.vacuum_pages
    )
    domains = {kind: (float(args.keep_days), make) for kind, make in purges().items()}
    journal = await Journal.open(path, [Tap()])
    try:
        quiet = await intake(journal, args.rate, float(args.quiet_seconds))
        keeper = JournalKeeper(journal.run, settings, domains, clock=lambda: now)
        started = time.perf_counter()
        running = asyncio.create_task(keeper.run_pass())
        during = await intake(journal, args.rate, running)
        done = await running
        pass_seconds = time.perf_counter() - started
    finally:
        await journal.close()
    return {
        "generated_s": generated,
        "before": before,
        "size_before": size_before,
        "after": shape(path),
        "size_after": path.stat().st_size,
        "quiet": quiet,
        "during": during,
        "pass_s": pass_seconds,
        "rows": done.rows,
        "pages": done.pages,
        "writes": done.writes,
        "slowest": done.slowest,
    }


def _ms(values: list[float], fn: Any) -> str:
    return f"{fn(values) * 1000:,.1f}"


def report(command: str, directory: Path, args: argparse.Namespace, found: dict[str, Any]) -> str:
    """Render the Markdown section recorded in docs/benchmarks.md."""
    years, kept_years = args.days / 365.25, args.keep_days / 365.25
    quiet, during = found["quiet"], found["during"]
    ratio = p99(during) / p99(quiet)
    removed = ", ".join(f"{kind} {n:,}" for kind, n in found["rows"].items())
    slowest = ", ".join(f"{kind} {s * 1000:,.0f}" for kind, s in found["slowest"].items())
    before, after = found["before"], found["after"]
    rows_before = ", ".join(f"{k} {before[k]:,}" for k in before if "pages" not in k)
    mb_after = found["size_after"] / 1e6
    return f"""{BEGIN}
## Journal retention and size (issue 22)

A journal holding {years:.1f} years of a busy endoscopy centre ({args.scopes} scopes,
{args.uses_per_day} uses a day, each after a full cycle of taps, a washer receipt and the
platform messages it queued, delivered), the shapes of `bench.lookback`, created by this build
(auto_vacuum=INCREMENTAL). The agent's retention keeper then runs one pass keeping
{args.keep_days} days (events, messages, reprocessing records alike): {args.batch} rows per
transaction, {args.pause * 1000:.0f} ms between two, then {args.vacuum_pages} free pages returned
per step. Meanwhile events arrive one at a time, {args.rate:.0f} a second, each with an outbox
message, through the real writer (group commit, `synchronous=FULL`): the latency of each ingest
(what an acknowledgement waits for) during the pass, beside the same intake for
{args.quiet_seconds} s before it, same run. The machine is shared with other sessions' work
(loaded): latencies are noisy, the ratio is what to read.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()}), SQLite {sqlite3.sqlite_version}
* Filesystem: {filesystem(directory)} (`df -T {_display(directory)}`)
* Rows before: {rows_before}; generated in {found["generated_s"]:.0f} s
* Pass: {found["pass_s"]:.0f} s, {found["writes"]:,} transactions; removed {removed};
  {found["pages"]:,} pages ({found["pages"] * 2048 / 1e6:,.0f} MB) returned to the filesystem;
  longest transaction of each kind, ms (with its wait for the writer): {slowest}
* File: {found["size_before"] / 1e6:,.0f} MB with {years:.1f} years, **{mb_after:,.0f} MB
  after the pass with {kept_years:.1f} years kept** ({mb_after / kept_years:,.0f} MB per year
  kept; {after["free_pages"]:,} free pages left for the next inserts)

| intake, one event per commit | ingests | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|
| without retention | {len(quiet):,} | {_ms(quiet, statistics.median)} | {_ms(quiet, p99)} | \
{_ms(quiet, max)} |
| during the retention pass and vacuum | {len(during):,} | {_ms(during, statistics.median)} | \
{_ms(during, p99)} | {_ms(during, max)} |

p99 during the pass: **{ratio:.2f}×** the p99 without it. At steady state each hourly pass
removes one hour's worth of old records (a few hundred rows), so the file stays at the size of
the retention period: about {mb_after:,.0f} MB for a centre this busy, plus the imaging index.
{END}"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.journal_retention", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the journal goes")
    parser.add_argument("--days", type=int, default=1126, help="days of history (1126)")
    parser.add_argument("--keep-days", type=int, default=1096, help="retention (1096: 3 years)")
    parser.add_argument("--uses-per-day", type=int, default=100, help="uses a day (100)")
    parser.add_argument("--scopes", type=int, default=SCOPES_DEFAULT, help="scopes (40)")
    parser.add_argument("--batch", type=int, default=100, help="rows per transaction (100)")
    parser.add_argument("--pause", type=float, default=0.1, help="s between two (0.1)")
    parser.add_argument("--vacuum-pages", type=int, default=64, help="pages per step (64)")
    parser.add_argument("--rate", type=float, default=50.0, help="events a second (50)")
    parser.add_argument("--quiet-seconds", type=int, default=60, help="intake alone (60 s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="journal-retention-", dir=args.dir))
    try:
        found = asyncio.run(measure(directory, args))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    section = report(command_line("bench.journal_retention", argv), args.dir, args, found)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
