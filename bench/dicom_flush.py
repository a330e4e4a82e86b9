"""C-STORE at realistic flush latencies: the agent's lean path at this disk / +1 ms / +5 ms per
flush (bench/flushdelay.c), one and four associations, beside its floors measured in the same run.

Run from the repository root: `.venv/bin/python -m bench.dicom_flush` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.

Floors, at each delay, measured with the same shim: *one flush* — storescp's own time per image
plus one fdatasync of a new 0.5 MB file (what an image that waits for exactly one flush cannot
beat); *durable write* — the same bytes written to a new file and fdatasynced, file after file,
no DICOM (what a durable receiver of large images cannot beat).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import flushdelay
from bench.dicom_store import (
    DEFAULT_DIR,
    DEFAULT_OUTPUT,
    MODES,
    Run,
    median_run,
    run_agent,
    run_storescp,
)
from bench.ingest import _cpu_model, _display, command_line, cpu_count, filesystem, record
from tests.dicom_files import make_ct_slices

BEGIN = "<!-- bench.dicom_flush:begin -->"
END = "<!-- bench.dicom_flush:end -->"
LEAN = MODES["fast"]
ASSOCIATIONS = 4
TARGET_SMALL_DISK = 0.45  # × storescp, this disk
TARGET_ONE_FLUSH = 0.8  # × the one-flush floor at +5 ms
TARGET_SCALING = 3.0  # 4 associations ÷ 1 at +5 ms
TARGET_LARGE_FLOOR = 0.85  # × the durable-write floor
TARGET_LARGE_STORESCP = 1.0
TARGET_RSS_MB = 150.0
SLOW_MS = 5.0


@dataclass(frozen=True, slots=True)
class Floors:
    """Medians at one delay: ms per fdatasync of a new 0.5 MB file; durable-write files/s."""

    flush_ms: float
    durable_rate: float  # large files written and fdatasynced, per second
    durable_mb_s: float


def _floors_child(directory: Path, large: Path, trials: int) -> None:
    """In a child process (with the shim): print the flush time and the durable-write rate."""
    if sys.platform == "win32":  # fdatasync, sync
        raise SystemExit("bench/dicom_flush.py needs Linux")
    scratch = Path(tempfile.mkdtemp(prefix="floor-", dir=directory))
    try:
        data = os.urandom(525_000)
        times = []
        for n in range(trials):
            fd = os.open(scratch / f"{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            start = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
            os.close(fd)
        files = sorted(large.iterdir())
        size = sum(p.stat().st_size for p in files)
        os.sync()
        start = time.perf_counter()
        for n, path in enumerate(files):
            payload = path.read_bytes()  # read before the clock would be fairer; cached anyway
            fd = os.open(scratch / f"large-{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view[: 1 << 20]) :]
            os.fdatasync(fd)
            os.close(fd)
        seconds = time.perf_counter() - start
        print(statistics.median(times) * 1000, len(files) / seconds, size / 1e6 / seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def floors(directory: Path, large: Path, env: dict[str, str] | None) -> Floors:
    """The floors at the delay `env` sets (None: this disk)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.dicom_flush", "--floors", str(directory), str(large)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.split()
    return Floors(float(out[0]), float(out[1]), float(out[2]))


@dataclass(frozen=True, slots=True)
class AtDelay:
    """Every receiver's median run at one flush delay, and the floors."""

    delay_ms: float
    runs: dict[tuple[str, str], Run]  # (corpus, receiver)
    floors: Floors

    def rate(self, corpus: str, receiver: str) -> float:
        return self.runs[(corpus, receiver)].rate

    def one_flush_floor(self) -> float:
        """Images/s of storescp's own time plus one flush per image."""
        storescp_ms = 1000 / self.rate("small", "dcmtk storescp")
        return 1000 / (storescp_ms + self.floors.flush_ms)


def lean4() -> str:
    return f"{LEAN}, {ASSOCIATIONS} associations"


def measure(
    workdir: Path, corpora: dict[str, Path], delay: float, library: Path | None, rounds: int
) -> AtDelay:
    """Every receiver `rounds` times, interleaved, at `delay` ms per flush."""
    if sys.platform == "win32":  # sync
        raise SystemExit("bench/dicom_flush.py needs Linux")
    env = None if library is None or delay == 0 else flushdelay.environment(library, delay)
    trials: dict[tuple[str, str], list[Run]] = {}
    for round_no in range(1, rounds + 1):
        for name, files in corpora.items():
            for receiver in ("storescp", LEAN, lean4()):
                os.sync()
                if receiver == "storescp":
                    result = run_storescp(workdir, files, name)
                else:
                    associations = ASSOCIATIONS if receiver == lean4() else 1
                    result = run_agent(
                        workdir, files, name, "fast", receiver, env=env, associations=associations
                    )
                print(
                    f"[{flushdelay.label(delay)}] {round_no} {name:5} {result.receiver:45}"
                    f" {result.rate:8.1f} images/s {result.throughput:8.1f} MB/s"
                    f" peak RSS {result.peak_rss_mb or 0:.0f} MB",
                    flush=True,
                )
                trials.setdefault((name, result.receiver), []).append(result)
    found = floors(workdir, corpora["large"], env)
    print(f"[{flushdelay.label(delay)}] floors {found}", flush=True)
    return AtDelay(delay, {key: median_run(runs) for key, runs in trials.items()}, found)


def table(m: AtDelay) -> str:
    """One delay's runs as Markdown, with the ratios the targets are about."""
    lines = [
        "| corpus | receiver | images/s | (range) | MB/s | × storescp | × floor | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    floor = {"small": m.one_flush_floor(), "large": m.floors.durable_rate}
    for (corpus, receiver), r in m.runs.items():
        ratio = r.rate / m.rate(corpus, "dcmtk storescp")
        of_floor = r.rate / floor[corpus]
        rss = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else "–"
        spread = f"{r.spread[0]:,.0f}–{r.spread[1]:,.0f}" if r.spread else "–"
        lines.append(
            f"| {corpus} | {receiver} | {r.rate:,.1f} | {spread} | {r.throughput:,.1f}"
            f" | {ratio:.2f} | {of_floor:.2f} | {rss} |"
        )
    lines.append(
        f"| small | floor: storescp + one flush ({m.floors.flush_ms:.2f} ms) |"
        f" {m.one_flush_floor():,.1f} | | | | 1.00 | |"
    )
    lines.append(
        f"| large | floor: durable write (write + fdatasync per file) |"
        f" {m.floors.durable_rate:,.1f} | | {m.floors.durable_mb_s:,.1f} | | 1.00 | |"
    )
    return "\n".join(lines)


def targets(results: list[AtDelay]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) of issue 21's acceptance for the C-STORE intake."""
    found = []
    by_delay = {m.delay_ms: m for m in results}
    if (disk := by_delay.get(0.0)) is not None:
        ratio = disk.rate("small", LEAN) / disk.rate("small", "dcmtk storescp")
        found.append(
            (f"small, this disk ≥ {TARGET_SMALL_DISK:g}× storescp", f"{ratio:.3f}×",
             ratio >= TARGET_SMALL_DISK)
        )  # fmt: skip
    for m in results:
        large = m.rate("large", LEAN)
        of_floor = large / m.floors.durable_rate
        of_storescp = large / m.rate("large", "dcmtk storescp")
        rss = m.runs[("large", lean4())].peak_rss_mb or float("nan")
        at = flushdelay.label(m.delay_ms)
        found += [
            (f"large, {at}: ≥ {TARGET_LARGE_FLOOR:g}× the durable-write floor", f"{of_floor:.2f}×",
             of_floor >= TARGET_LARGE_FLOOR),
            (f"large, {at}: ≥ {TARGET_LARGE_STORESCP:g}× storescp", f"{of_storescp:.2f}×",
             of_storescp >= TARGET_LARGE_STORESCP),
            (f"large, {at}: peak RSS ≤ {TARGET_RSS_MB:g} MB with {ASSOCIATIONS} associations",
             f"{rss:.0f} MB", rss <= TARGET_RSS_MB),
        ]  # fmt: skip
    if (slow := by_delay.get(SLOW_MS)) is not None:
        one = slow.rate("small", LEAN)
        of_floor = one / slow.one_flush_floor()
        scaling = slow.rate("small", lean4()) / one
        at = flushdelay.label(SLOW_MS)
        found += [
            (f"small, {at}: ≥ {TARGET_ONE_FLUSH:g}× the one-flush floor", f"{of_floor:.2f}×",
             of_floor >= TARGET_ONE_FLUSH),
            (f"small, {at}: {ASSOCIATIONS} associations ≥ {TARGET_SCALING:g}× one",
             f"{scaling:.3f}×", scaling >= TARGET_SCALING),
        ]  # fmt: skip
    return found


def report(command: str, directory: Path, results: list[AtDelay], corpus: str, rounds: int) -> str:
    """The Markdown section recorded in docs/benchmarks.md."""
    rows = "\n".join(
        f"| {name} | {measured} | {'pass' if met else '**FAIL**'} |"
        for name, measured, met in targets(results)
    )
    tables = "\n\n".join(f"### {flushdelay.label(m.delay_ms)}\n\n{table(m)}" for m in results)
    return f"""{BEGIN}
## DICOM C-STORE at realistic flush latencies (one flush per image)

dcmtk `storescu` (`TCP_NODELAY=1`) sends each corpus over loopback to dcmtk `storescp` (one
process, no fsync: the reference) and to the agent's SCP on its lean path as the agent runs it:
each image received in place into a file created ahead in an already-fsynced folder, sealed and
fdatasynced once, answered, and its `dicom.stored` event committed by a real `Journal` in group
commits (the association's release waits for them); "{ASSOCIATIONS} associations" is that many
storescu processes at once, each sending the whole corpus (images/s counts all of them). The
agent runs with `bench/flushdelay.c` preloaded adding the stated delay to every flush (storescp
makes none). The floors are measured in the same run with the same shim (see the module's
docstring). Each receiver runs {rounds} times, interleaved, after `sync`; the median run is
shown (range: slowest–fastest). The machine may be shared with other work (see the load
average): compare the ratios, measured side by side, rather than absolute rates.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()}); load average at the end {_load()}
* Filesystem: {filesystem(directory)} (`df -T {_display(directory)}`)
* Corpus: {corpus}

{tables}

Targets (issue 21):

| target | measured | result |
|---|---|---|
{rows}
{END}"""


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dicom_flush", description=__doc__)
    parser.add_argument("--small", type=int, default=200, help="512×512 CT images (200)")
    parser.add_argument("--large", type=int, default=6, help="large images (6)")
    parser.add_argument("--large-side", type=int, default=3584, help="their side, px (3584)")
    parser.add_argument("--delays", default="0,1,5", help="ms added per flush (0,1,5)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work dir (var/bench)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file")
    parser.add_argument("--rounds", type=int, default=3, help="trials per receiver (3): median")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--floors", nargs=2, type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    if sys.platform != "linux":
        raise SystemExit("bench/dicom_flush.py needs Linux (LD_PRELOAD, fdatasync, storescp)")
    args = parse_args(argv)
    if args.floors is not None:
        _floors_child(args.floors[0], args.floors[1], 30)
        return
    delays = [float(d) for d in args.delays.split(",")]
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dicom-flush-", dir=directory))
    try:
        library = flushdelay.build(workdir) if any(delays) else None
        corpora = {
            "small": make_ct_slices(workdir / "small", args.small)[0].parent,
            "large": make_ct_slices(
                workdir / "large", args.large, args.large_side, args.large_side
            )[0].parent,
        }
        results = [measure(workdir, corpora, d, library, args.rounds) for d in delays]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    side = args.large_side
    corpus = (
        f"{args.small} CT 512×512 16-bit (0.5 MB each); {args.large} CT {side}×{side} 16-bit"
        f" ({side * side * 2 / 1e6:.1f} MB each); Explicit VR Little Endian"
    )
    for m in results:
        print(f"\n{flushdelay.label(m.delay_ms)}\n{table(m)}")
    for name, measured, met in targets(results):
        print(f"{'PASS' if met else 'FAIL'}  {name}: {measured}")
    if not args.no_record:
        command = command_line("bench.dicom_flush", argv)
        record(args.output, report(command, directory, results, corpus, args.rounds), BEGIN, END)


if __name__ == "__main__":
    main()
