"""Memory while draining a large backlog: RSS sampled as the dispatcher empties the outbox.

Run from the repository root: `.venv/bin/python -m bench.backlog_memory` (see `--help`).
A journal is filled with `--messages` pending messages (as after a long outage), then a child
process opens it the way the agent does and drains it through a dispatcher whose uplink answers
every send `Delivered` at once: what is measured is the agent's own memory (journal, leases,
settles), not a platform client's. It records the result in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.outcomes import Delivered, Outcome
from agent.dispatch.uplink import Uplink
from agent.journal.database import open_database
from agent.journal.outbox import OutboxMessage
from agent.journal.writer import Journal
from bench.ingest import _cpu_model, command_line, cpu_count, record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.backlog_memory:begin -->"
END = "<!-- bench.backlog_memory:end -->"
TARGET_RSS_MB = 150.0
UPLINK = "bench_cloud"


class NullUplink(Uplink):
    """Delivers everything at once (the platform's side is not what is measured)."""

    async def send(self, message: OutboxMessage) -> Outcome:
        return Delivered()


@dataclass(frozen=True, slots=True)
class Sample:
    """RSS at one moment of the drain."""

    seconds: float
    delivered: int
    rss_mb: float


def fill(path: Path, messages: int, keys: int) -> None:
    """Create the journal at `path` with `messages` pending messages over `keys` order keys."""
    conn = open_database(path)
    now = time.time()
    payload = json.dumps({"tag": "E2003412" + "0" * 16, "antenna": 1, "rssi": -40})
    batch = 50_000
    for first in range(0, messages, batch):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, created_at,"
            " next_attempt_at) VALUES (?, 'rfid.read', ?, ?, ?, ?, ?)",
            (
                (UPLINK, f"reader-{n % keys}", f"m{n}", payload, now, now)
                for n in range(first, min(messages, first + batch))
            ),
        )
        conn.execute("COMMIT")
    conn.close()


def rss_mb() -> float:
    """This process's resident set size now."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def drain(path: Path, messages: int, args: argparse.Namespace) -> list[Sample]:
    """(Child) drain the journal, sampling RSS every `args.sample` seconds."""
    journal = await Journal.open(path)
    settings = DispatchSettings(concurrency=args.concurrency, send_run=args.send_run)
    dispatcher = Dispatcher(journal, NullUplink(UPLINK), settings)
    journal.on_commit(lambda uplinks: dispatcher.wake())
    samples = [Sample(0.0, 0, rss_mb())]
    start = time.perf_counter()
    task = asyncio.create_task(dispatcher.run())
    next_sample = start + args.sample
    while dispatcher.counters.delivered < messages:
        await asyncio.sleep(0.2)  # a benchmark's sampling clock
        if time.perf_counter() >= next_sample:
            now = time.perf_counter() - start
            samples.append(Sample(now, dispatcher.counters.delivered, rss_mb()))
            print(f"{now:6.0f} s  {dispatcher.counters.delivered:>9,}  {samples[-1].rss_mb:.0f} MB")
            next_sample += args.sample
    samples.append(Sample(time.perf_counter() - start, dispatcher.counters.delivered, rss_mb()))
    await dispatcher.stop(grace=5.0)
    await task
    await journal.close()
    return samples


def report(command: str, args: argparse.Namespace, samples: list[Sample]) -> str:
    """The Markdown section recorded in docs/benchmarks.md."""
    during = [s.rss_mb for s in samples[1:]]
    peak = max(during)
    last = samples[-1]
    rows = "\n".join(
        f"| {s.seconds:.0f} | {s.delivered:,} | {s.rss_mb:.0f} |"
        for s in samples[:: max(1, len(samples) // 12)]
    )
    verdict = "pass" if peak <= TARGET_RSS_MB else "**FAIL**"
    return f"""{BEGIN}
## Draining a large backlog: memory

A journal holding {args.messages:,} pending messages over {args.keys} order keys (as after a
long outage) is drained by a dispatcher (`concurrency = {args.concurrency}`, `send_run =
{args.send_run}`) in a process of its own, whose uplink answers every send `Delivered` at once:
the agent's own memory (journal, leases, settles), not a platform client's. RSS is sampled every
{args.sample:g} s.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()})
* Drained in {last.seconds:.0f} s ({last.delivered / last.seconds:,.0f} messages/s)
* RSS before the first lease {samples[0].rss_mb:.0f} MB; while draining min
  {min(during):.0f} MB, max {peak:.0f} MB

| s | delivered | RSS MB |
|---:|---:|---:|
{rows}

| target | measured | result |
|---|---|---|
| RSS ≤ {TARGET_RSS_MB:g} MB and flat while draining | {min(during):.0f}–{peak:.0f} MB | {verdict} |
{END}"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog_memory", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000, help="backlog (1,000,000)")
    parser.add_argument("--keys", type=int, default=64, help="order keys (64)")
    parser.add_argument("--concurrency", type=int, default=8, help="dispatcher slots (8)")
    parser.add_argument("--send-run", type=int, default=32, help="messages per run (32)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work folder (var/bench)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown to update")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.child:
        samples = asyncio.run(drain(args.child / "journal.db", args.messages, args))
        (args.child / "samples.json").write_text(json.dumps([asdict(s) for s in samples]))
        return
    with tempfile.TemporaryDirectory(prefix="backlog-", dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"filling a journal with {args.messages:,} pending messages ...", flush=True)
        fill(folder / "journal.db", args.messages, args.keys)
        shown = sys.argv[1:] if argv is None else argv
        child = [sys.executable, "-m", "bench.backlog_memory", *shown, "--child", str(folder)]
        subprocess.run(child, check=True, cwd=ROOT)
        raw = json.loads((folder / "samples.json").read_text())
    samples = [Sample(**s) for s in raw]
    section = report(command_line("bench.backlog_memory", argv), args, samples)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
