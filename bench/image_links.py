"""Seed 004's image links (WADO-URI on the platform listener) against nginx serving the same files,
measured in the same run, with the agent's peak memory.

Run from the repository root: `.venv/bin/python -m bench.image_links` (see `--help`; needs nginx:
`apt-get install nginx-light`). It writes `--images` files of `--mb` MB, indexes them as the
imaging domain does, serves them from a separate agent process (the kit's WADO handler on a
platform listener) and from nginx, and GETs every file from each, alternately, `--rounds` times.
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.dicom_store import _free_port
from bench.ingest import _cpu_model, command_line, cpu_count, record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.image_links:begin -->"
END = "<!-- bench.image_links:end -->"
STUDY = "1.2.826.0.1.3680043.8.498.4004"
CHUNK = 1 << 20


def make_images(folder: Path, count: int, megabytes: int) -> list[Path]:
    """`count` files of `megabytes` MB (a DICM preamble, then bytes that do not compress)."""
    folder.mkdir(parents=True)
    paths = []
    for n in range(1, count + 1):
        path = folder / f"{n}.dcm"
        with path.open("wb") as out:
            out.write(b"\0" * 128 + b"DICM")
            for _ in range(megabytes):
                out.write(os.urandom(CHUNK))
        paths.append(path)
    return paths


async def serve(database: Path, port: int) -> None:
    """The agent side (a process of its own): the WADO route on a platform listener."""
    from agent.endpoints import Endpoints
    from agent.events import Event
    from agent.imaging.instances import QUERIES
    from agent.journal.writer import Journal
    from agent.listener_config import PlatformListener
    from agent.uplinks.kit.wado import WadoLinks, WadoService
    from agent.web.listener import ListenerCounters, start_listener

    journal = await Journal.open(database, ())
    settings = PlatformListener.model_validate(
        {"enabled": True, "port": port, "allow": ["127.0.0.0/8"]}
    )
    wado = WadoLinks.model_validate({"enabled": True, "base_url": f"http://127.0.0.1:{port}"})
    endpoints = Endpoints(settings, [WadoService(wado, QUERIES).route()])

    async def emit(_: Event) -> bool:
        return False

    runner = await start_listener("bench", endpoints, emit, journal.run, ListenerCounters())
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await journal.close()


def index(database: Path, paths: list[Path]) -> list[str]:
    """Index the files as one study; the SOP Instance UIDs, in order."""
    from agent.imaging.index import add_instance
    from agent.journal.database import open_database

    conn = open_database(database)
    conn.execute("BEGIN")
    sops = []
    for n, path in enumerate(paths, start=1):
        sop = f"{STUDY}.1.{n}"
        payload = {
            "path": str(path), "size": path.stat().st_size, "sop_instance_uid": sop,
            "study_uid": STUDY, "series_uid": f"{STUDY}.1", "patient_id": "P1",
            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "instance_number": n,
            "transfer_syntax": "1.2.840.10008.1.2.1",
        }  # fmt: skip
        at = "2026-12-07T00:00:00"
        add_instance(conn, payload, event_id=f"e{n}", at=at, duplicates="overwrite")
        sops.append(sop)
    conn.execute("COMMIT")
    conn.close()
    return sops


def start_nginx(root: Path, work: Path, port: int) -> subprocess.Popen[bytes]:
    config = work / "nginx.conf"
    # As root, its worker must read files in a 0700 temporary folder: it runs as root too.
    user = ""
    if sys.platform != "win32" and os.geteuid() == 0:
        user = "user root; "
    config.write_text(
        f"daemon off; {user}worker_processes 1; pid {work}/nginx.pid;"
        f" error_log {work}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; sendfile on; client_body_temp_path {work}/tmp;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
        encoding="utf-8",
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen([nginx, "-c", str(config), "-p", str(work)])


async def fetch_all(urls: list[str]) -> float:
    """Seconds to GET every URL in turn, reading each body to the end."""
    start = time.perf_counter()
    async with aiohttp.ClientSession() as client:
        for url in urls:
            async with client.get(url) as answer:
                answer.raise_for_status()
                async for _ in answer.content.iter_chunked(CHUNK):
                    pass
    return time.perf_counter() - start


async def wait_listening(url: str) -> None:
    async with aiohttp.ClientSession() as client:
        for _ in range(200):
            try:
                async with client.get(url):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise SystemExit(f"{url}: nothing listens")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(args: argparse.Namespace, work: Path) -> tuple[float, float, float, float]:
    """(agent MB/s, nginx MB/s, ratio, agent peak RSS MB)."""
    paths = make_images(work / "images", args.images, args.mb)
    database = work / "journal.db"
    sops = index(database, paths)
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    agent_port, nginx_port = _free_port(), _free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "bench.image_links", "--serve", str(database), str(agent_port)],
        stdout=subprocess.PIPE,
    )
    assert agent.stdout is not None
    agent.stdout.readline()
    (work / "nginx").mkdir()
    nginx = start_nginx(work / "images", work / "nginx", nginx_port)
    try:
        base = f"http://127.0.0.1:{agent_port}/wado?requestType=WADO&studyUID={STUDY}"
        agent_urls = [
            f"{base}&seriesUID={STUDY}.1&objectUID={sop}&contentType=application/dicom"
            for sop in sops
        ]
        nginx_urls = [f"http://127.0.0.1:{nginx_port}/{p.name}" for p in paths]
        ours, theirs = asyncio.run(rounds(agent_urls, nginx_urls, total_mb, args.rounds))
        rss = peak_rss_mb(agent.pid)
    finally:
        agent.terminate()
        nginx.terminate()
        agent.wait(10)
        nginx.wait(10)
    agent_mbs, nginx_mbs = statistics.median(ours), statistics.median(theirs)
    return agent_mbs, nginx_mbs, agent_mbs / nginx_mbs, rss


async def rounds(
    agent_urls: list[str], nginx_urls: list[str], total_mb: float, count: int
) -> tuple[list[float], list[float]]:
    """MB/s of each round, the agent's and nginx's, alternately."""
    await wait_listening(nginx_urls[0])
    ours, theirs = [], []
    for _ in range(count):
        ours.append(total_mb / await fetch_all(agent_urls))
        theirs.append(total_mb / await fetch_all(nginx_urls))
    return ours, theirs


def report(
    command: str, args: argparse.Namespace, result: tuple[float, float, float, float]
) -> str:
    agent_mbs, nginx_mbs, ratio, rss = result
    lines = [
        BEGIN,
        "## Seed 004 image links (WADO-URI) beside nginx",
        "",
        f"{args.images} files of {args.mb} MB, indexed as one study, fetched one after another by",
        "aiohttp from the agent's WADO route (a platform listener in a process of its own) and",
        "from nginx (sendfile) serving the same folder, alternately, the median of",
        f"{args.rounds} rounds. Targets (issue 17): ≥ 0.8× nginx, agent peak RSS ≤ 150 MB.",
        "",
        f"* Command: `{command}`",
        f"* Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"* Machine: nproc {cpu_count()} ({_cpu_model()}), Python {sys.version.split()[0]}",
        "",
        "| server | MB/s | × nginx | peak RSS MB |",
        "|---|---:|---:|---:|",
        f"| nginx | {nginx_mbs:,.0f} | 1.00 | – |",
        f"| agent WADO | {agent_mbs:,.0f} | {ratio:.2f} | {rss:.0f} |",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.image_links", description=__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--mb", type=int, default=25, help="MB per image")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), int(args.serve[1])))
        return
    if sys.platform == "win32":
        raise SystemExit("bench/image_links.py measures on Linux (nginx, /proc): run it there")
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args, Path(folder))
    section = report(command_line("bench.image_links", argv), args, result)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
