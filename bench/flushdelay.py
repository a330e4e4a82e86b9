"""Flush-latency harness: run a benchmark as if every flush took `this disk + N ms`.

`bench/flushdelay.c`, built here with the system C compiler into a temporary folder and loaded
with LD_PRELOAD, adds a delay to fsync, fdatasync and sync_file_range and counts them.

    .venv/bin/python -m bench.flushdelay --verify
    .venv/bin/python -m bench.flushdelay --delays 0,1,5 -- CMD ARGS...

For benchmarks, never for tests of behaviour (see docs/benchmarks.md, "Flush latency").
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "flushdelay.c"
ENV_DELAY = "FLUSHDELAY_US"
ENV_REPORT = "FLUSHDELAY_REPORT"


@dataclass(frozen=True, slots=True)
class Flushes:
    """Flush calls counted by the shim, summed over the processes that exited normally."""

    fsync: int = 0
    fdatasync: int = 0
    sync_file_range: int = 0

    @property
    def total(self) -> int:
        return self.fsync + self.fdatasync + self.sync_file_range

    def __add__(self, other: Flushes) -> Flushes:
        return Flushes(
            self.fsync + other.fsync,
            self.fdatasync + other.fdatasync,
            self.sync_file_range + other.sync_file_range,
        )


def build(directory: Path) -> Path:
    """Compile the shim into `directory`; return the shared library's path."""
    library = directory / "libflushdelay.so"
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE), "-ldl", "-pthread"],
        check=True,
    )
    return library


def environment(library: Path, delay_ms: float, report: Path | None = None) -> dict[str, str]:
    """This process's environment plus what makes a child run with `delay_ms` per flush."""
    env = dict(os.environ)
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{library} {preload}".strip()
    env[ENV_DELAY] = str(round(delay_ms * 1000))
    if report is not None:
        env[ENV_REPORT] = str(report)
    return env


def active_delay_ms() -> float:
    """The delay the shim adds in this process (0 when it is not loaded)."""
    if "flushdelay" not in os.environ.get("LD_PRELOAD", ""):
        return 0.0
    return int(os.environ.get(ENV_DELAY, "0")) / 1000


def flushes_so_far() -> int | None:
    """Flushes this process has made, if the shim is loaded (None otherwise)."""
    try:
        counter = ctypes.CDLL(None).flushdelay_flushes
    except AttributeError:
        return None
    counter.restype = ctypes.c_long
    return int(counter())


def label(delay_ms: float) -> str:
    """How a delay is named in tables: "this disk" or "+N ms per flush"."""
    return "this disk" if delay_ms == 0 else f"+{delay_ms:g} ms per flush"


def read_report(report: Path) -> Flushes:
    """Sum the per-process lines the shim appended to `report`."""
    total = Flushes()
    if not report.exists():
        return total
    for line in report.read_text().splitlines():
        fields = line.split()
        if len(fields) == 7:
            total += Flushes(int(fields[2]), int(fields[4]), int(fields[6]))
    return total


def run(command: list[str], library: Path, delay_ms: float) -> tuple[int, Flushes]:
    """Run `command` with `delay_ms` added to every flush; its exit status and flush counts."""
    with tempfile.TemporaryDirectory(prefix="flushdelay-") as tmp:
        report = Path(tmp) / "report"
        env = environment(library, delay_ms, report)
        status = subprocess.run(command, env=env, check=False).returncode
        return status, read_report(report)


# What --verify runs under the shim: N SQLite commits as the journal makes them (WAL,
# synchronous=FULL) and N os.fsync calls, timed, so the counts and the delay can be checked.
_PROBE = textwrap.dedent(
    """
    import os, sqlite3, sys, tempfile, time
    n = int(sys.argv[1])
    with tempfile.TemporaryDirectory(dir=sys.argv[2]) as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "j.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (x)")
        start = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO t VALUES (?)", (i,))
        commits = time.perf_counter() - start
        conn.close()
        fd = os.open(os.path.join(tmp, "f"), os.O_WRONLY | os.O_CREAT, 0o600)
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x")
            os.fsync(fd)
        fsyncs = time.perf_counter() - start
        os.close(fd)
    print(f"{commits / n * 1000:.3f} {fsyncs / n * 1000:.3f}")
    """
)


@dataclass(frozen=True, slots=True)
class Verification:
    """Flushes counted and ms per call for N SQLite commits and N os.fsync at one delay."""

    delay_ms: float
    calls: int
    flushes: Flushes
    ms_per_commit: float
    ms_per_fsync: float


def verify(library: Path, delay_ms: float, calls: int, directory: Path) -> Verification:
    """Run the probe under the shim at `delay_ms`."""
    with tempfile.TemporaryDirectory(prefix="flushdelay-") as tmp:
        report = Path(tmp) / "report"
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, str(calls), str(directory)],
            env=environment(library, delay_ms, report),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return Verification(delay_ms, calls, read_report(report), float(out[0]), float(out[1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.flushdelay", description=__doc__)
    parser.add_argument(
        "--delays",
        type=lambda s: [float(d) for d in s.split(",")],
        default=[0.0, 1.0, 5.0],
        help="ms added per flush, comma-separated (0,1,5); 0 is this disk as it is",
    )
    parser.add_argument(
        "--verify", action="store_true", help="check that the shim sees SQLite's flushes"
    )
    parser.add_argument("--calls", type=int, default=200, help="commits and fsyncs in --verify")
    parser.add_argument(
        "--dir", type=Path, default=Path("var/bench"), help="where --verify writes (var/bench)"
    )
    parser.add_argument("command", nargs="*", help="the benchmark to run (after --)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flushdelay-build-") as tmp:
        library = build(Path(tmp))
        if args.verify:
            args.dir.mkdir(parents=True, exist_ok=True)
            print("delay | SQLite commits: fsync fdatasync ms/commit | os.fsync: ms/call")
            for delay in args.delays:
                v = verify(library, delay, args.calls, args.dir.resolve())
                print(
                    f"{label(delay)}: {v.calls} commits + {v.calls} os.fsync →"
                    f" fsync {v.flushes.fsync}, fdatasync {v.flushes.fdatasync},"
                    f" sync_file_range {v.flushes.sync_file_range};"
                    f" {v.ms_per_commit:.2f} ms/commit, {v.ms_per_fsync:.2f} ms/fsync"
                )
            return 0
        if not args.command:
            print("nothing to run: give a command after --, or --verify", file=sys.stderr)
            return 2
        worst = 0
        for delay in args.delays:
            print(f"\n=== {label(delay)}: {' '.join(args.command)}", flush=True)
            start = time.perf_counter()
            status, flushes = run(args.command, library, delay)
            print(
                f"=== {label(delay)}: exit {status}, {time.perf_counter() - start:.1f} s,"
                f" flushes: fsync {flushes.fsync}, fdatasync {flushes.fdatasync},"
                f" sync_file_range {flushes.sync_file_range}",
                flush=True,
            )
            worst = worst or status
        return worst


if __name__ == "__main__":
    sys.exit(main())
