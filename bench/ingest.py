"""Ingest benchmark: durable events/s and ingest latency against the disk's raw fsync rate.

Run from the repository root: `.venv/bin/python -m bench.ingest` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.events import Event
from agent.journal.writer import Journal
from agent.uplinks.http.forward import ForwardEvents

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.ingest:begin -->"
END = "<!-- bench.ingest:end -->"

# The targets this benchmark reports pass/fail for (never asserted in tests).
TARGET_EVENTS_PER_S = 20_000
TARGET_P99_MS = 5.0
TARGET_PRODUCERS = 64
TARGET_SINGLE_RATIO = 0.3


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured run: `producers` concurrent tasks ingesting one event at a time."""

    producers: int
    events: int
    seconds: float
    commits: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def per_commit(self) -> float:
        return self.events / self.commits if self.commits else 0.0


@dataclass(frozen=True, slots=True)
class FsyncProbe:
    """The disk's raw rate of small appends each followed by fsync."""

    rate: float
    p50_ms: float
    p99_ms: float


def raw_fsync(directory: Path, seconds: float, size: int = 200) -> FsyncProbe:
    """Append `size` bytes to a file and fsync it, in a loop, for `seconds`."""
    path = directory / "fsync.probe"
    record = os.urandom(size // 2).hex().encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    try:
        latencies = []
        start = time.perf_counter_ns()
        deadline = start + int(seconds * 1e9)
        now = start
        while now < deadline:
            os.write(fd, record)
            os.fsync(fd)
            done = time.perf_counter_ns()
            latencies.append(done - now)
            now = done
    finally:
        os.close(fd)
        path.unlink()
    latencies.sort()
    return FsyncProbe(
        rate=len(latencies) / ((now - start) / 1e9),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
    )


def _payload(producer: int, n: int) -> dict[str, object]:
    # An RFID tap as the reader drivers emit it: a few short fields.
    return {
        "tag": f"E2003412{producer:04X}{n:012X}",
        "antenna": 1 + n % 4,
        "rssi": -40 - n % 30,
        "station": f"washer-{producer % 6}",
    }


async def _producer(
    journal: Journal, producer: int, warm_ns: int, end_ns: int, latencies: list[int]
) -> None:
    n = 0
    while time.perf_counter_ns() < end_ns:
        event = Event("rfid.read", f"reader-{producer % 8}", _payload(producer, n))
        n += 1
        t0 = time.perf_counter_ns()
        fresh = await journal.ingest([event])
        t1 = time.perf_counter_ns()
        if fresh != [True]:
            raise RuntimeError(f"event {event.id} was not stored as new: {fresh}")
        if t0 >= warm_ns and t1 <= end_ns:
            latencies.append(t1 - t0)


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index] / 1e6


async def run_scenario(directory: Path, producers: int, seconds: float, warmup: float) -> Scenario:
    """Ingest from `producers` tasks into a fresh journal for `warmup + seconds`."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ingest-{producers}-", dir=directory))
    try:
        handler = ForwardEvents("forward", "bench_cloud", ("rfid.*",))
        journal = await Journal.open(workdir / "journal.db", (handler,))
        try:
            latencies: list[int] = []
            warm_ns = time.perf_counter_ns() + int(warmup * 1e9)
            end_ns = warm_ns + int(seconds * 1e9)
            tasks = [
                asyncio.create_task(_producer(journal, i, warm_ns, end_ns, latencies))
                for i in range(producers)
            ]
            await asyncio.sleep(max(0.0, (warm_ns - time.perf_counter_ns()) / 1e9))
            commits_before = journal.commits
            await asyncio.sleep(max(0.0, (end_ns - time.perf_counter_ns()) / 1e9))
            commits = journal.commits - commits_before
            await asyncio.gather(*tasks)
            outbox = await journal.run(
                lambda conn: conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            )
            events = await journal.run(
                lambda conn: conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            )
            if outbox != events:
                raise RuntimeError(f"{events} events but {outbox} outbox messages")
        finally:
            await journal.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    latencies.sort()
    return Scenario(
        producers=producers,
        events=len(latencies),
        seconds=seconds,
        commits=commits,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
    )


def filesystem(directory: Path) -> str:
    """Describe the filesystem holding `directory` as `df -T` reports it."""
    try:
        out = subprocess.run(
            ["df", "-T", str(directory)], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    fields = out.splitlines()[-1].split()
    if len(fields) < 7:
        return out.strip()
    return f"{fields[1]} on {fields[0]} mounted at {fields[6]}"


def table(results: list[Scenario], fsync: FsyncProbe) -> str:
    """Render the results as a Markdown table."""
    lines = [
        "| producers | durable events/s | p50 ms | p99 ms | events/commit | × raw fsync rate |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.producers} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
            f" | {r.per_commit:.1f} | {r.rate / fsync.rate:.2f} |"
        )
    return "\n".join(lines)


def targets(results: list[Scenario], fsync: FsyncProbe) -> list[tuple[str, str, bool]]:
    """Return (target, measured, met) for each target that this run measured."""
    found = []
    by = {r.producers: r for r in results}
    if (r := by.get(TARGET_PRODUCERS)) is not None:
        found.append(
            (
                f"≥ {TARGET_EVENTS_PER_S:,} durable events/s at {TARGET_PRODUCERS} producers",
                f"{r.rate:,.0f} events/s",
                r.rate >= TARGET_EVENTS_PER_S,
            )
        )
        found.append(
            (
                f"p99 ≤ {TARGET_P99_MS:g} ms at {TARGET_PRODUCERS} producers",
                f"{r.p99_ms:.2f} ms",
                r.p99_ms <= TARGET_P99_MS,
            )
        )
    if (r := by.get(1)) is not None:
        ratio = r.rate / fsync.rate
        found.append(
            (
                f"single producer ≥ {TARGET_SINGLE_RATIO:g}× the raw fsync rate",
                f"{ratio:.2f}× ({r.rate:,.0f} vs {fsync.rate:,.0f} fsyncs/s)",
                ratio >= TARGET_SINGLE_RATIO,
            )
        )
    return found


def report(
    command: str,
    directory: Path,
    results: list[Scenario],
    fsync: FsyncProbe,
    seconds: float,
    warmup: float,
    loads: tuple[float, float],
) -> str:
    """Render the Markdown section recorded in docs/benchmarks.md."""
    rows = "\n".join(
        f"| {name} | {measured} | {'pass' if met else '**FAIL**'} |"
        for name, measured, met in targets(results, fsync)
    )
    return f"""{BEGIN}
## Ingest

Durable ingest through `Journal.ingest` (WAL, `synchronous=FULL`, group commit); every event also
runs the `ForwardEvents` handler, so each one writes its raw row and one outbox row in the same
commit. Each producer is an asyncio task looping `await journal.ingest([event])` with one small
RFID-tap event; latency is the time from calling `ingest` to its return (after the commit).
The reference is the same disk's raw rate of appending 200 bytes to a file and `os.fsync`-ing it.
Events/commit is the durable events divided by the commits in the measured window. The machine may
be shared with other work (see the load average): expect about ±10% between runs.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()}), {platform.machine()},
  Linux {platform.release()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}
* Load average (1 min) before / after the run: {loads[0]:.2f} / {loads[1]:.2f}
* Filesystem: {filesystem(directory)} (`df -T {_display(directory)}`)
* Per scenario: {warmup:g} s warm-up, then {seconds:g} s measured, fresh journal each time

Raw write+fsync (reference): **{fsync.rate:,.0f} fsyncs/s**, p50 {fsync.p50_ms:.2f} ms,
p99 {fsync.p99_ms:.2f} ms

{table(results, fsync)}

| target | measured | result |
|---|---|---|
{rows}
{END}"""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that ran benchmark `module` with `argv` (default: this process's), to record."""
    shown = sys.argv[1:] if argv is None else argv
    return " ".join([f".venv/bin/python -m {module}", *map(shlex.quote, shown)])


def record(output: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Write `section` into `output`, replacing the one between `begin` and `end` if any."""
    text = output.read_text(encoding="utf-8") if output.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"\nrecorded in {_display(output.resolve())}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=12.0, help="measured seconds per scenario (12)"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (1)")
    parser.add_argument(
        "--fsync-duration", type=float, default=4.0, help="seconds of the raw fsync probe (4)"
    )
    parser.add_argument(
        "--producers",
        type=lambda s: [int(p) for p in s.split(",")],
        default=[1, 8, 64],
        help="comma-separated producer counts (1,8,64)",
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="where the journals go (var/bench)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to update"
    )
    parser.add_argument("--no-record", action="store_true", help="print only")
    return parser.parse_args(argv)


async def run_scenarios(directory: Path, args: argparse.Namespace) -> list[Scenario]:
    """Run one scenario per producer count, printing each result as it comes."""
    results = []
    for producers in args.producers:
        result = await run_scenario(directory, producers, args.duration, args.warmup)
        print(
            f"{producers:>3} producers: {result.rate:>9,.0f} events/s"
            f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
            f"  {result.per_commit:5.1f} events/commit"
        )
        results.append(result)
    return results


def cpu_count() -> int:
    """CPUs this process may run on (its affinity, where the OS has one)."""
    if sys.platform == "linux":
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average (0 where the OS keeps none: Windows)."""
    if sys.platform == "win32":
        return 0.0
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    print(f"journal dir: {directory} ({filesystem(directory)})")
    fsync = raw_fsync(directory, args.fsync_duration)
    print(
        f"raw write+fsync: {fsync.rate:,.0f} fsyncs/s"
        f"  p50 {fsync.p50_ms:.2f} ms  p99 {fsync.p99_ms:.2f} ms"
    )
    results = asyncio.run(run_scenarios(directory, args))
    loads = (load_before, load_average())
    print()
    print(table(results, fsync))
    print()
    for name, measured, met in targets(results, fsync):
        print(f"{'PASS' if met else 'FAIL'}  {name}: {measured}")
    if not args.no_record:
        command = command_line("bench.ingest", argv)
        section = report(command, directory, results, fsync, args.duration, args.warmup, loads)
        record(args.output, section)


if __name__ == "__main__":
    main()
