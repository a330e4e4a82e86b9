"""Seed 001's WADO-URI (the results-sharing gate, downloadKey checked with the platform and then
cached) against nginx serving the same files, in the same run: 0.5 MB and 25 MB instances, 1 and
16 concurrent clients, with the agent's peak memory and each server's CPU time per image (the
figure the machine's load moves least).

Run from the repository root: `.venv/bin/python -m bench.results_sharing_wado` (needs nginx). The
agent side is a process of its own: the gate's routes on a platform listener, with the
results-sharing simulator in the same process to verify the one downloadKey (its answer is then
cached, as in production). It prints a table and records it in docs/benchmarks.md; it asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.dicom_store import _free_port
from bench.image_links import (
    CHUNK,
    STUDY,
    index,
    make_images,
    peak_rss_mb,
    start_nginx,
    wait_listening,
)
from bench.ingest import _cpu_model, command_line, cpu_count, record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.results_sharing_wado:begin -->"
END = "<!-- bench.results_sharing_wado:end -->"
CASES = ((0.5, 64), (25, 8))  # (MB per instance, instances)
Row = tuple[float, int, float, float, float, float]  # MB, clients, MB/s and ms CPU/image, each


def cpu_seconds(pid: int) -> float:
    """CPU time of all of `pid`'s threads (the scheduler's nanoseconds, not clock ticks)."""
    tasks = Path(f"/proc/{pid}/task")
    return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir()) / 1e9


def nginx_worker(master: int) -> int:
    """The pid of nginx's one worker (the master only waits)."""
    for _ in range(200):
        children = Path(f"/proc/{master}/task/{master}/children")
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise SystemExit("nginx started no worker")


def make_sized(folder: Path, count: int, megabytes: float) -> list[Path]:
    """`count` files of `megabytes` MB (whole MB through make_images, else written here)."""
    if megabytes >= 1:
        return make_images(folder, count, int(megabytes))
    folder.mkdir(parents=True)
    paths = []
    for n in range(1, count + 1):
        path = folder / f"{n}.dcm"
        path.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(int(megabytes * (1 << 20))))
        paths.append(path)
    return paths


async def serve(database: Path, port: int, platform_port: int) -> None:
    """The agent side: the results-sharing gate on a platform listener (and the simulator)."""
    from agent.events import Event
    from agent.imaging.instances import QUERIES
    from agent.journal.writer import Journal
    from agent.simulators.results_sharing import (
        ResultsSharingSimulator,
        ResultsSharingSimulatorConfig,
    )
    from agent.uplinks.results_sharing.config import ResultsSharingConfig
    from agent.uplinks.results_sharing.gate import endpoints
    from agent.web.listener import ListenerCounters, start_listener

    simulator = ResultsSharingSimulator(
        "platform",
        ResultsSharingSimulatorConfig.model_validate(
            {"type": "results_sharing", "port": platform_port}
        ),
    )
    await simulator.start()
    journal = await Journal.open(database, ())
    config = ResultsSharingConfig.model_validate(
        {
            "type": "results_sharing", "base_url": simulator.base_url, "app_id": "edge-agent",
            "app_secret": "simulator-secret", "org_code": "BENCH",
            "gate": {"listener": {"enabled": True, "port": port, "allow": ["127.0.0.0/8"]},
                     "viewer_redirect": "http://pacs.local/v?s={study_uid}"},
        }
    )  # fmt: skip

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    runner = await start_listener(
        "bench", endpoints("bench", config, images=QUERIES), emit, journal.run, ListenerCounters()
    )
    print(f"key={simulator.issue_key('download', STUDY, ttl=86400)}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await journal.close()
        await simulator.stop()


async def fetch_all(urls: list[str], clients: int) -> float:
    """Seconds to GET every URL with `clients` concurrent clients, reading each to the end."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker() -> None:
            while not queue.empty():
                url = queue.get_nowait()
                async with client.get(url) as answer:
                    answer.raise_for_status()
                    async for _ in answer.content.iter_chunked(CHUNK):
                        pass

        await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - start


async def rounds(
    agent: tuple[list[str], int],
    nginx: tuple[list[str], int],
    total_mb: float,
    count: int,
    clients: int,
) -> tuple[float, float, float, float]:
    """Median MB/s and ms of CPU per image, the agent's and nginx's (urls and the pid doing the
    work), over `count` alternating rounds."""
    await wait_listening(nginx[0][0])
    await fetch_all(agent[0][:1], 1)  # the key's one check with the platform: then cached
    speed: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    for _ in range(count):
        for n, (urls, pid) in enumerate((agent, nginx)):
            before = cpu_seconds(pid)
            speed[n].append(total_mb / await fetch_all(urls, clients))
            cpu[n].append((cpu_seconds(pid) - before) * 1000 / len(urls))
    ours, theirs = (statistics.median(v) for v in speed)
    our_cpu, their_cpu = (statistics.median(v) for v in cpu)
    return ours, theirs, our_cpu, their_cpu


def measure(args: argparse.Namespace, work: Path) -> tuple[list[Row], float]:
    """Rows (MB, clients, agent and nginx MB/s, their ms CPU per image) and the agent's peak
    RSS (MB)."""
    rows: list[Row] = []
    rss = 0.0
    for megabytes, count in CASES:
        case = work / f"case-{megabytes}"
        paths = make_sized(case / "images", count, megabytes)
        database = case / "journal.db"
        sops = index(database, paths)
        total_mb = sum(p.stat().st_size for p in paths) / 1e6
        agent_port, platform_port, nginx_port = _free_port(), _free_port(), _free_port()
        agent = subprocess.Popen(
            [sys.executable, "-m", "bench.results_sharing_wado", "--serve", str(database),
             str(agent_port), str(platform_port)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert agent.stdout is not None
        line = ""
        while not line.startswith("key="):  # the process logs to stdout too
            line = agent.stdout.readline().decode()
            if not line:
                raise SystemExit("the agent side exited")
        key = line.strip().removeprefix("key=")
        (case / "nginx").mkdir()
        nginx = start_nginx(case / "images", case / "nginx", nginx_port)
        try:
            base = f"http://127.0.0.1:{agent_port}/wado?requestType=WADO&studyUID={STUDY}"
            agent_urls = [
                f"{base}&seriesUID={STUDY}.1&objectUID={sop}&contentType=application/dicom"
                f"&downloadKey={key}"
                for sop in sops
            ]
            nginx_urls = [f"http://127.0.0.1:{nginx_port}/{p.name}" for p in paths]
            worker = nginx_worker(nginx.pid)
            for clients in (1, 16):
                found = asyncio.run(
                    rounds((agent_urls, agent.pid), (nginx_urls, worker), total_mb, args.rounds,
                           clients)
                )  # fmt: skip
                rows.append((megabytes, clients, *found))
            rss = max(rss, peak_rss_mb(agent.pid))
        finally:
            agent.terminate()
            nginx.terminate()
            agent.wait(10)
            nginx.wait(10)
    return rows, rss


def report(command: str, args: argparse.Namespace, rows: list[Row], rss: float,
           load: tuple[float, float]) -> str:  # fmt: skip
    lines = [
        BEGIN,
        "## Seed 001 WADO-URI (results-sharing gate) beside nginx",
        "",
        "Instances fetched as application/dicom from the gate's WADO route (a platform listener in",
        "a process of its own; the downloadKey verified once with the simulator, then cached) and",
        "from nginx (sendfile) serving the same folder, alternately, the median of",
        f"{args.rounds} rounds per row. Targets (issue 19): ≥ 0.7× nginx, peak RSS ≤ 150 MB.",
        "CPU: each server's (all threads, /proc schedstat) per image, median of the rounds; what",
        "bounds the 0.5 MB single-client row: docs/platforms/results_sharing.md (Benchmark).",
        "",
        f"* Command: `{command}`",
        f"* Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"* Machine: nproc {cpu_count()} ({_cpu_model()}), Python {sys.version.split()[0]}",
        f"* Agent peak RSS (gate and simulator in one process): {rss:.0f} MB",
        f"* Load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f}"
        " (other sessions share this VM: ratios move with it)",
        "",
        "| instance | clients | agent MB/s | nginx MB/s | × nginx | agent ms CPU/image"
        " | nginx ms CPU/image |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {mb:g} MB × {dict(CASES)[mb]} | {clients} | {ours:,.0f} | {theirs:,.0f} |"
            f" {ours / theirs:.2f} | {our_cpu:.3f} | {their_cpu:.3f} |"
            for mb, clients, ours, theirs, our_cpu, their_cpu in rows
        ),
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.results_sharing_wado", description=__doc__
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument(
        "--serve", nargs=3, metavar=("DB", "PORT", "PLATFORM"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), int(args.serve[1]), int(args.serve[2])))
        return
    if sys.platform == "win32":
        raise SystemExit("bench/results_sharing_wado.py measures on Linux (nginx, /proc)")
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        rows, rss = measure(args, Path(folder))
    load = (before, os.getloadavg()[0])
    section = report(command_line("bench.results_sharing_wado", argv), args, rows, rss, load)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
