"""C-STORE benchmark: dcmtk storescu → the agent's SCP (durable) vs → dcmtk storescp, same run.

Run from the repository root: `.venv/bin/python -m bench.dicom_store` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
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
from typing import Any

from agent.events import Event
from agent.journal.readers import Readers
from agent.journal.writer import Journal
from bench.ingest import (
    _cpu_model,
    _display,
    command_line,
    cpu_count,
    filesystem,
    record,
)
from drivers.dicom.scp import DicomScp, DicomScpConfig
from tests.dicom_files import make_ct_slices

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.dicom_store:begin -->"
END = "<!-- bench.dicom_store:end -->"
TARGET_SMALL_RATIO = 0.40
TARGET_LARGE_RATIO = 1.0
TARGET_RSS_MB = 150.0
# Receive modes of the agent's SCP (`--receive`), the first as the agent runs by default.
MODES = {
    "fast": "agent SCP (lean path)",
    "file": "agent SCP (pynetdicom, chunked to file)",
    "memory": "agent SCP (pynetdicom, in memory)",
}
# The lean path once more with its state (spool and journal) in RAM, where a flush costs nothing:
# what the agent's own work allows, apart from the disk.
TMPFS = Path("/dev/shm")
CEILING = "agent SCP (lean path, state on tmpfs)"


@dataclass(frozen=True, slots=True)
class Run:
    """One corpus sent by storescu to one receiver."""

    receiver: str
    corpus: str
    images: int
    megabytes: float
    seconds: float
    peak_rss_mb: float | None
    spread: tuple[float, float] | None = None  # slowest and fastest trial, images/s

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def throughput(self) -> float:
        return self.megabytes / self.seconds


def dcmtk(tool: str) -> str:
    """The dcmtk binary, skipping pynetdicom's same-named Python apps in the venv."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with candidate.open("rb") as binary:
                if binary.read(2) != b"#!":
                    return str(candidate)
    raise SystemExit(f"dcmtk {tool} is required (apt-get install -y dcmtk)")


class JournalContext:
    """What the runtime gives the SCP: emit = a durable journal ingest; read = a read-only
    connection of the journal's readers (opened on first use, closed by `close`)."""

    def __init__(self, state_dir: Path, journal: Journal) -> None:
        self.state_dir = state_dir
        self.journal = journal
        self._readers: Readers | None = None

    async def read(self, fn: Any) -> Any:
        if self._readers is None:
            self._readers = Readers(self.journal.path)
        return await self._readers.run(fn)

    async def close(self) -> None:
        if self._readers is not None:
            await self._readers.close()

    async def emit(self, event: Event) -> bool:
        return (await self.journal.ingest([event]))[0]

    def emit_from_thread(self, event: Event, timeout: float) -> bool:
        return self.journal.ingest_from_thread([event], timeout)[0]

    def submit_from_thread(self, event: Event) -> concurrent.futures.Future[list[bool]]:
        return self.journal.submit_from_thread([event])


async def serve(state_dir: Path, receive: str) -> None:
    """The agent side (a child process): a real journal and the SCP; prints its port."""
    journal = await Journal.open(state_dir / "journal.db")
    config = DicomScpConfig.model_validate(
        {
            "type": "dicom_scp",
            "ae_title": "EDGE",
            "host": "127.0.0.1",
            "port": 0,
            "allowed_calling_aes": [],
            "min_free_mb": 0,
            "query_retrieve": False,
            "fast_store": receive == "fast",
            "receive": "file" if receive == "fast" else receive,
        }
    )
    scp = DicomScp("bench", config)
    task = asyncio.create_task(scp.run(JournalContext(state_dir, journal)))
    await scp.ready.wait()
    assert scp.address is not None
    print(f"PORT {scp.address[1]}", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # the parent closes stdin to stop us
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await journal.close()


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def send(storescu: str, port: int, corpus: Path, associations: int = 1) -> float:
    """Seconds storescu takes to send every file of `corpus` over one association (or as many
    storescu processes at once, each sending every file)."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    files = sorted(str(p) for p in corpus.iterdir())
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            [storescu, "-aet", f"BENCH{n}", "-aec", "EDGE", "127.0.0.1", str(port), *files],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for n in range(associations)
    ]
    for sender in senders:
        if sender.wait() != 0:
            raise RuntimeError(f"storescu exited with {sender.returncode}")
    return time.perf_counter() - start


def run_storescp(workdir: Path, corpus: Path, name: str) -> Run:
    """Send `corpus` to a single-process dcmtk storescp writing to disk."""
    out = Path(tempfile.mkdtemp(prefix="storescp-", dir=workdir))
    port = _free_port()
    env = {**os.environ, "TCP_NODELAY": "1"}
    process = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "EDGE", "-od", str(out), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        seconds = send(dcmtk("storescu"), port, corpus)
        rss = _peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(out, ignore_errors=True)
    return Run("dcmtk storescp", name, *_size(corpus), seconds, rss)


def run_agent(
    workdir: Path,
    corpus: Path,
    name: str,
    receive: str,
    label: str = "",
    *,
    env: dict[str, str] | None = None,
    associations: int = 1,
) -> Run:
    """Send `corpus` to the agent's SCP (fresh process, fresh journal in `workdir`; `env`: its
    environment, e.g. the flush-delay shim), over `associations` associations at once."""
    state = Path(tempfile.mkdtemp(prefix="agent-", dir=workdir))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.dicom_store", "--serve", str(state), "--receive", receive],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        line = ""
        while not line.startswith("PORT "):  # after the child's log lines, if any
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the agent SCP exited before listening")
        port = int(line.split()[1])
        seconds = send(dcmtk("storescu"), port, corpus, associations)
        rss = _peak_rss_mb(process.pid)
        process.stdin.close()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(state, ignore_errors=True)
    images, megabytes = _size(corpus)
    receiver = label or MODES[receive]
    return Run(receiver, name, images * associations, megabytes * associations, seconds, rss)


@dataclass(frozen=True, slots=True)
class DiskCosts:
    """Median milliseconds of the flushes a durable image needs, on the benchmark's disk."""

    file: float  # fdatasync of a new 0.5 MB file just written
    folder: float  # its folder fsynced after the file was renamed into it
    commit: float  # a 4 KB overwrite fdatasynced, as a journal commit's WAL write


def disk_costs(directory: Path, trials: int = 50) -> DiskCosts:
    """Measure `DiskCosts` in a scratch folder of `directory`."""
    if sys.platform == "win32":  # O_DIRECTORY, fdatasync, pwrite, sync, storescp, /dev/shm
        raise SystemExit("bench/dicom_store.py measures Linux flush costs: run it on Linux")
    scratch = Path(tempfile.mkdtemp(prefix="flush-", dir=directory))
    data = os.urandom(525_000)
    times: dict[str, list[float]] = {"file": [], "folder": [], "commit": []}
    try:
        (scratch / "in").mkdir()
        wal = os.open(scratch / "wal", os.O_RDWR | os.O_CREAT, 0o600)
        os.write(wal, b"\0" * 4096)
        os.fsync(wal)
        folder = os.open(scratch / "in", os.O_RDONLY | os.O_DIRECTORY)
        os.sync()
        for n in range(trials):
            fd = os.open(scratch / f"{n}.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            start = time.perf_counter()
            os.fdatasync(fd)
            os.close(fd)
            renamed = time.perf_counter()
            os.rename(scratch / f"{n}.part", scratch / "in" / f"{n}.dcm")
            os.fsync(folder)
            committed = time.perf_counter()
            os.pwrite(wal, os.urandom(4096), 0)
            os.fdatasync(wal)
            end = time.perf_counter()
            times["file"].append(renamed - start)
            times["folder"].append(committed - renamed)
            times["commit"].append(end - committed)
        os.close(folder)
        os.close(wal)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return DiskCosts(**{key: statistics.median(values) * 1000 for key, values in times.items()})


def median_run(trials: list[Run]) -> Run:
    """The trial with the median time; peak RSS is the highest of all trials."""
    ordered = sorted(trials, key=lambda r: r.seconds)
    middle = ordered[len(ordered) // 2]
    peaks = [r.peak_rss_mb for r in trials if r.peak_rss_mb is not None]
    spread = (ordered[-1].rate, ordered[0].rate)
    return Run(
        middle.receiver,
        middle.corpus,
        middle.images,
        middle.megabytes,
        middle.seconds,
        max(peaks) if peaks else None,
        spread,
    )


def _usable(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK)


def _costs_line(costs: DiskCosts) -> str:
    return (
        f"Flushes on this disk (median): fdatasync of a new 0.5 MB file {costs.file:.2f} ms;"
        f" its folder fsynced after the rename {costs.folder:.2f} ms;"
        f" a 4 KB overwrite fdatasynced (a journal commit) {costs.commit:.2f} ms."
    )


def _size(corpus: Path) -> tuple[int, float]:
    files = list(corpus.iterdir())
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("storescp did not start listening")


def table(runs: list[Run]) -> str:
    """Render the runs as a Markdown table, ratios against storescp on the same corpus."""
    reference = {r.corpus: r for r in runs if r.receiver == "dcmtk storescp"}
    lines = [
        "| corpus | receiver | images/s | (range) | MB/s | × storescp | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        ratio = r.rate / reference[r.corpus].rate
        rss = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else "–"
        spread = f"{r.spread[0]:,.0f}–{r.spread[1]:,.0f}" if r.spread else "–"
        lines.append(
            f"| {r.corpus} | {r.receiver} | {r.rate:,.1f} | {spread} | {r.throughput:,.1f}"
            f" | {ratio:.2f} | {rss} |"
        )
    return "\n".join(lines)


def targets(runs: list[Run], receive: str) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the receive mode the agent uses."""
    label = MODES[receive]
    ref = {r.corpus: r for r in runs if r.receiver == "dcmtk storescp"}
    agent = {r.corpus: r for r in runs if r.receiver == label}
    small, large = agent["small"], agent["large"]
    small_ratio = small.rate / ref["small"].rate
    large_ratio = large.rate / ref["large"].rate
    rss = large.peak_rss_mb or float("nan")
    return [
        (f"small images ≥ {TARGET_SMALL_RATIO:g}× storescp", f"{small_ratio:.2f}×",
         small_ratio >= TARGET_SMALL_RATIO),
        (f"large images ≥ {TARGET_LARGE_RATIO:g}× storescp", f"{large_ratio:.2f}×",
         large_ratio >= TARGET_LARGE_RATIO),
        (f"peak RSS ≤ {TARGET_RSS_MB:g} MB receiving large images", f"{rss:.0f} MB",
         rss <= TARGET_RSS_MB),
    ]  # fmt: skip


def flush_share(runs: list[Run], costs: DiskCosts) -> str:
    """Where the small-image time goes: the lean path on disk against the same on tmpfs."""
    small = {r.receiver: r for r in runs if r.corpus == "small"}
    disk, ram, reference = small.get(MODES["fast"]), small.get(CEILING), small["dcmtk storescp"]
    if disk is None or ram is None:
        return _costs_line(costs)
    per_image = {name: 1000 / run.rate for name, run in (("disk", disk), ("ram", ram))}
    flushes = costs.file + costs.folder + costs.commit
    return (
        f"On small images storescp takes {1000 / reference.rate:.2f} ms per image and writes no"
        f" flush. The lean path takes {per_image['ram']:.2f} ms with its state on tmpfs"
        f" ({ram.rate / reference.rate:.2f}× storescp) and {per_image['disk']:.2f} ms on this"
        f" disk: the {per_image['disk'] - per_image['ram']:.2f} ms between them is what making"
        f" each image durable costs here, one flush on its path (measured alone: the file"
        f" {costs.file:.2f} ms; pynetdicom's path also waits for its folder {costs.folder:.2f} ms"
        f" and the journal commit {costs.commit:.2f} ms, {flushes:.2f} ms together)."
    )


def report(
    command: str, directory: Path, runs: list[Run], corpus: str, rounds: int, costs: DiskCosts
) -> str:
    """Render the Markdown section recorded in docs/benchmarks.md."""
    rows = "\n".join(
        f"| {name} | {measured} | {'pass' if met else '**FAIL**'} |"
        for name, measured, met in targets(runs, "fast")
    )
    return f"""{BEGIN}
## DICOM C-STORE

dcmtk `storescu` (one association, `TCP_NODELAY=1`) sends a corpus over loopback to (a) dcmtk
`storescp` in one process writing files (no fsync), the reference, and (b) the agent's SCP in its
own process as the agent runs it, on its *lean path* (the default for plain storage
associations, `drivers/dicom/fast_store.py`): per image its identifying tags read without
decoding pixel data, a file created ahead sealed and fdatasynced once before the C-STORE
response, and one `dicom.stored` event committed by a real `Journal` in group commits (the
release waits for them); for comparison, through pynetdicom (`fast_store = false`, a spool file
fsynced, renamed, its folder fsynced and the event committed before the response) with chunked
and in-memory receive. The
lean path runs once more with its spool and journal on tmpfs (`/dev/shm`), where every fsync
returns at once: the same work without the disk's flush latency, to tell the two apart (it is
not a configuration to run: nothing there survives a power cut). Times are storescu's wall
time; peak RSS is the receiver's `VmHWM`, each run in a fresh process. Every run starts after
`sync`, so none pays for an earlier run's (or the corpus's) writeback; each receiver runs
{rounds} times, interleaved, and the table shows the median run (the range is the slowest and
fastest).

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()})
* Filesystem: {filesystem(directory)} (`df -T {_display(directory)}`)
* Corpus: {corpus}

{table(runs)}

{flush_share(runs, costs)}

Targets (agent, lean path, state on disk):

| target | measured | result |
|---|---|---|
{rows}
{END}"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dicom_store", description=__doc__)
    parser.add_argument("--small", type=int, default=300, help="512×512 CT images (300)")
    parser.add_argument("--large", type=int, default=10, help="large images (10)")
    parser.add_argument("--large-side", type=int, default=3584, help="their side, px (3584)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work dir (var/bench)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file")
    parser.add_argument("--rounds", type=int, default=3, help="trials per receiver (3): median")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--receive", default="file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    if sys.platform == "win32":  # O_DIRECTORY, fdatasync, pwrite, sync, storescp, /dev/shm
        raise SystemExit("bench/dicom_store.py measures Linux flush costs: run it on Linux")
    args = parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.receive))
        return
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dicom-store-", dir=directory))
    ram: Path | None = None
    try:
        corpora = {
            "small": make_ct_slices(workdir / "small", args.small)[0].parent,
            "large": make_ct_slices(
                workdir / "large", args.large, args.large_side, args.large_side
            )[0].parent,
        }
        costs = disk_costs(directory)
        ram = Path(tempfile.mkdtemp(prefix="dicom-store-", dir=TMPFS)) if _usable(TMPFS) else None
        receivers: list[str] = ["storescp", *MODES, *([CEILING] if ram is not None else [])]
        trials: dict[tuple[str, str], list[Run]] = {}
        for round_no in range(1, args.rounds + 1):
            for name, files in corpora.items():
                for receiver in receivers:
                    os.sync()  # no run pays for the previous one's (or the corpus's) writeback
                    if receiver == "storescp":
                        result = run_storescp(workdir, files, name)
                    elif receiver == CEILING:
                        assert ram is not None
                        result = run_agent(ram, files, name, "fast", CEILING)
                    else:
                        result = run_agent(workdir, files, name, receiver)
                    print(
                        f"{round_no} {name:5} {result.receiver:40} {result.rate:8.1f} images/s"
                        f" {result.throughput:8.1f} MB/s  peak RSS {result.peak_rss_mb or 0:.0f} MB"
                    )
                    trials.setdefault((name, result.receiver), []).append(result)
        runs = [median_run(found) for found in trials.values()]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if ram is not None:
            shutil.rmtree(ram, ignore_errors=True)
    side = args.large_side
    corpus = (
        f"{args.small} CT 512×512 16-bit (0.5 MB each); {args.large} CT {side}×{side} 16-bit"
        f" ({side * side * 2 / 1e6:.1f} MB each); Explicit VR Little Endian"
    )
    print()
    print(table(runs))
    print(flush_share(runs, costs))
    for name, measured, met in targets(runs, "fast"):
        print(f"{'PASS' if met else 'FAIL'}  {name}: {measured}")
    if not args.no_record:
        command = command_line("bench.dicom_store", argv)
        section = report(command, directory, runs, corpus, args.rounds, costs)
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
