"""Ingest benchmark: durable events/s and ingest latency against the disk's raw fsync rate.

Run from the repository root: `.venv/bin/python -m bench.ingest` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.events import Event
from agent.journal import database
from agent.journal.writer import Journal
from agent.uplinks.http.forward import ForwardEvents
from bench import flushdelay
from bench.ingest_reference import Reference, minimal_writer, written_bytes

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
# Issue 21: at realistic flush latencies (bench/flushdelay.py), group commit hides the flush.
TARGET_DISK_RATIO = 4.0  # 64 producers on this disk, × the raw fsync rate
TARGET_SLOW_RATIO = 25.0  # 64 producers at +5 ms per flush, × the raw flush rate
TARGET_SLOW_SINGLE_RATIO = 0.9  # one producer at +5 ms per flush
SLOW_DELAY_MS = 5.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured run: `producers` concurrent tasks ingesting one event at a time."""

    producers: int
    events: int
    seconds: float
    commits: int
    p50_ms: float
    p99_ms: float
    wal_pages_per_event: float = 0.0
    bytes_per_event: float = 0.0  # everything the process wrote: WAL and checkpoints

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
    journal: Journal,
    producer: int,
    warm_ns: int,
    end_ns: int,
    latencies: list[int],
    stored: list[int],
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
        stored[0] += 1
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
            stored = [0]
            warm_ns = time.perf_counter_ns() + int(warmup * 1e9)
            end_ns = warm_ns + int(seconds * 1e9)
            tasks = [
                asyncio.create_task(_producer(journal, i, warm_ns, end_ns, latencies, stored))
                for i in range(producers)
            ]
            await asyncio.sleep(max(0.0, (warm_ns - time.perf_counter_ns()) / 1e9))
            commits_before, frames_before = journal.commits, journal.wal_frames
            stored_before, wrote_before = stored[0], written_bytes()
            await asyncio.sleep(max(0.0, (end_ns - time.perf_counter_ns()) / 1e9))
            commits = journal.commits - commits_before
            # WAL frames are counted at checkpoints (every ≤ 500 frames): a window's edges
            # are off by at most that, against tens of thousands in the window.
            frames = journal.wal_frames - frames_before
            wrote = written_bytes() - wrote_before
            durable = max(1, stored[0] - stored_before)
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
        wal_pages_per_event=frames / durable,
        bytes_per_event=wrote / durable,
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


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run of the benchmark at one flush delay: its references and its scenarios."""

    delay_ms: float
    fsync: FsyncProbe
    reference: Reference
    results: list[Scenario] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        raw = json.loads(text)
        return cls(
            raw["delay_ms"],
            FsyncProbe(**raw["fsync"]),
            Reference(**raw["reference"]),
            [Scenario(**r) for r in raw["results"]],
        )


def table(m: Measurement) -> str:
    """Render one delay's results, the minimal writer first, as a Markdown table."""
    ref, fsync = m.reference, m.fsync
    lines = [
        "| writer | durable events/s | p50 ms | p99 ms | events/commit | WAL pages/event"
        " | KB written/event | × raw flush rate | × minimal writer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| minimal sqlite3 writer, 64 events/commit | {ref.rate:,.0f} | | | 64.0"
        f" | {ref.wal_pages_per_event:.3f} | {ref.bytes_per_event / 1024:.2f}"
        f" | {ref.rate / fsync.rate:.2f} | 1.00 |",
    ]
    for r in m.results:
        lines.append(
            f"| agent, {r.producers} producers | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
            f" | {r.per_commit:.1f} | {r.wal_pages_per_event:.3f}"
            f" | {r.bytes_per_event / 1024:.2f} | {r.rate / fsync.rate:.2f}"
            f" | {r.rate / ref.rate:.2f} |"
        )
    return "\n".join(lines)


def targets(measurements: list[Measurement]) -> list[tuple[str, str, bool]]:
    """Return (target, measured, met) for each target that these runs measured."""
    found = []
    for m in measurements:
        by = {r.producers: r for r in m.results}
        flush = m.fsync.rate
        if m.delay_ms == 0 and (r := by.get(TARGET_PRODUCERS)) is not None:
            found += [
                (
                    f"≥ {TARGET_EVENTS_PER_S:,} durable events/s at {TARGET_PRODUCERS} producers",
                    f"{r.rate:,.0f} events/s",
                    r.rate >= TARGET_EVENTS_PER_S,
                ),
                (
                    f"p99 ≤ {TARGET_P99_MS:g} ms at {TARGET_PRODUCERS} producers",
                    f"{r.p99_ms:.2f} ms",
                    r.p99_ms <= TARGET_P99_MS,
                ),
                (
                    f"{TARGET_PRODUCERS} producers ≥ {TARGET_DISK_RATIO:g}× the raw fsync rate",
                    f"{r.rate / flush:.2f}×",
                    r.rate / flush >= TARGET_DISK_RATIO,
                ),
            ]
        if m.delay_ms == 0 and (r := by.get(1)) is not None:
            found.append(
                (
                    f"single producer ≥ {TARGET_SINGLE_RATIO:g}× the raw fsync rate",
                    f"{r.rate / flush:.2f}× ({r.rate:,.0f} vs {flush:,.0f} fsyncs/s)",
                    r.rate / flush >= TARGET_SINGLE_RATIO,
                )
            )
        if m.delay_ms == SLOW_DELAY_MS and (r := by.get(TARGET_PRODUCERS)) is not None:
            found.append(
                (
                    f"{TARGET_PRODUCERS} producers at {flushdelay.label(m.delay_ms)}"
                    f" ≥ {TARGET_SLOW_RATIO:g}× the raw flush rate",
                    f"{r.rate / flush:.1f}× ({r.rate:,.0f} vs {flush:,.0f} flushes/s)",
                    r.rate / flush >= TARGET_SLOW_RATIO,
                )
            )
        if m.delay_ms == SLOW_DELAY_MS and (r := by.get(1)) is not None:
            found.append(
                (
                    f"single producer at {flushdelay.label(m.delay_ms)}"
                    f" ≥ {TARGET_SLOW_SINGLE_RATIO:g}× the raw flush rate",
                    f"{r.rate / flush:.2f}× ({r.rate:,.0f} vs {flush:,.0f} flushes/s)",
                    r.rate / flush >= TARGET_SLOW_SINGLE_RATIO,
                )
            )
    return found


def report(
    command: str,
    directory: Path,
    measurements: list[Measurement],
    args: argparse.Namespace,
    loads: tuple[float, float],
) -> str:
    """Render the Markdown section recorded in docs/benchmarks.md."""
    rows = "\n".join(
        f"| {name} | {measured} | {'pass' if met else '**FAIL**'} |"
        for name, measured, met in targets(measurements)
    )
    parts = []
    for m in measurements:
        parts.append(
            f"### {flushdelay.label(m.delay_ms)}\n\n"
            f"Raw write+fsync (reference): **{m.fsync.rate:,.0f} flushes/s**,"
            f" p50 {m.fsync.p50_ms:.2f} ms, p99 {m.fsync.p99_ms:.2f} ms\n\n{table(m)}"
        )
    body = "\n\n".join(parts)
    return f"""{BEGIN}
## Ingest

Durable ingest through `Journal.ingest` (WAL, `synchronous=FULL`, group commit); every event also
runs the `ForwardEvents` handler, so each one writes its raw row and one outbox row in the same
commit. Each producer is an asyncio task looping `await journal.ingest([event])` with one small
RFID-tap event; latency is the time from calling `ingest` to its return (after the commit).
References, measured in the same run at the same flush delay: the disk's raw rate of appending
200 bytes to a file and `os.fsync`-ing it, and a *minimal sqlite3 writer* (no agent code: a
loop inserting the same two rows per event into the same schema, 64 events per commit).
WAL pages/event are the frames appended to the WAL per durable event; KB written/event is
everything the process passed to `write(2)` (WAL, then the checkpoints copying pages into the
database file) per durable event. Delays other than "this disk" come from
`bench/flushdelay.c` (see "Flush latency" below), the whole run in a process of its own. The
machine may be shared with other work (see the load average): expect about ±10% between runs.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()}), {platform.machine()},
  Linux {platform.release()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}
* Load average (1 min) before / after the run: {loads[0]:.2f} / {loads[1]:.2f}
* Filesystem: {filesystem(directory)} (`df -T {_display(directory)}`)
* Journal page size: {database.PAGE_SIZE} bytes (schema v{database.latest_version()})
* Per scenario: {args.warmup:g} s warm-up, then {args.duration:g} s measured, fresh journal each
  time; minimal writer {args.reference_duration:g} s

{body}

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
        "--reference-duration", type=float, default=4.0, help="seconds of the minimal writer (4)"
    )
    parser.add_argument(
        "--producers",
        type=lambda s: [int(p) for p in s.split(",")],
        default=[1, 8, 64],
        help="comma-separated producer counts (1,8,64)",
    )
    parser.add_argument(
        "--flush-delays",
        type=lambda s: [float(d) for d in s.split(",")],
        default=[0.0, 1.0, SLOW_DELAY_MS],
        help="ms added to every flush, one run each; 0 is this disk as it is (0,1,5)",
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="where the journals go (var/bench)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to update"
    )
    parser.add_argument(
        "--page-size", type=int, help="page size of the new journals (the agent's default)"
    )
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
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
            f"  {result.wal_pages_per_event:.3f} WAL pages/event"
            f"  {result.bytes_per_event / 1024:.2f} KB/event",
            flush=True,
        )
        results.append(result)
    return results


def measure(directory: Path, args: argparse.Namespace) -> Measurement:
    """The references and every scenario, in this process, at its flush delay."""
    delay = flushdelay.active_delay_ms()
    fsync = raw_fsync(directory, args.fsync_duration)
    print(
        f"[{flushdelay.label(delay)}] raw write+fsync: {fsync.rate:,.0f} flushes/s"
        f"  p50 {fsync.p50_ms:.2f} ms  p99 {fsync.p99_ms:.2f} ms",
        flush=True,
    )
    ref = minimal_writer(directory, args.reference_duration)
    print(
        f"minimal writer: {ref.rate:>9,.0f} events/s  {ref.wal_pages_per_event:.3f} WAL"
        f" pages/event  {ref.bytes_per_event / 1024:.2f} KB/event",
        flush=True,
    )
    return Measurement(delay, fsync, ref, asyncio.run(run_scenarios(directory, args)))


def measure_at(delay_ms: float, library: Path, argv: list[str], workdir: Path) -> Measurement:
    """`measure` in a child process whose flushes each take `delay_ms` longer."""
    out = workdir / f"ingest-{delay_ms:g}.json"
    command = [sys.executable, "-m", "bench.ingest", *argv, "--flush-delays", "0"]
    command += ["--child-json", str(out)]
    env = flushdelay.environment(library, delay_ms)
    subprocess.run(command, env=env, check=True, cwd=ROOT)
    return Measurement.from_json(out.read_text())


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
    if args.page_size:
        database.PAGE_SIZE = args.page_size
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if args.child_json is not None:
        args.child_json.write_text(measure(directory, args).to_json())
        return
    load_before = load_average()
    print(f"journal dir: {directory} ({filesystem(directory)})")
    shown = sys.argv[1:] if argv is None else argv
    child_argv = list(shown)  # its own --flush-delays comes last and wins
    measurements = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        library = flushdelay.build(Path(tmp)) if any(args.flush_delays) else None
        for delay in args.flush_delays:
            if delay == 0 or library is None:
                measurements.append(measure(directory, args))
            else:
                measurements.append(measure_at(delay, library, child_argv, Path(tmp)))
    loads = (load_before, load_average())
    for m in measurements:
        print(f"\n{flushdelay.label(m.delay_ms)}: raw flush {m.fsync.rate:,.0f}/s\n{table(m)}")
    print()
    for name, measured, met in targets(measurements):
        print(f"{'PASS' if met else 'FAIL'}  {name}: {measured}")
    if not args.no_record:
        command = command_line("bench.ingest", argv)
        record(args.output, report(command, directory, measurements, args, loads))


if __name__ == "__main__":
    main()
