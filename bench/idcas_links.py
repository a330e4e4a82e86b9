"""Seed 002's signed page links: links per second built by the agent beside the same crypto done
directly with pycryptodome in the same run, and the latency of GET /idcas/open/{page} (a 302 to
a freshly signed URL) under concurrent clients.

Run from the repository root: `.venv/bin/python -m bench.idcas_links` (see `--help`). Part 1
alternates the agent's `links.build` and a direct implementation (json + DES3 + Base64 + MD5 +
quote) for the PC clinical view and the H5 report list, `--rounds` times, and takes the median.
Part 2 serves the HIS-facing listener from a separate process and sends `--clients` concurrent
clients, each GETting the open link `--requests` times, and takes the percentiles. It prints a
table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from Crypto.Cipher import DES3
from Crypto.Util.Padding import pad

from bench.dicom_store import _free_port
from bench.ingest import _cpu_model, command_line, cpu_count, load_average, record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.idcas_links:begin -->"
END = "<!-- bench.idcas_links:end -->"
DES_KEY, IV, MD5_KEY = "eWorldTomTaw#7=*", b"TomTaw#7", "TomtawMD5Key"
SEV = "itTbK+INTLuZji4vrvuJNQrk7SZRTF+q4xNG3pqoTjfP5NXfhIh5InU0CTjBdjYlhGIroV1sPVSvpLdwdHwtSA99" * 4
PORTAL = "https://portal.example.com"
ZONE = ZoneInfo("Asia/Shanghai")
TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "x" * 600
CLINIC = {"work_no": "001", "org_code": "2470", "accession_number": "SD-53242",
          "start_time": "2021-05-05", "end_time": "2021-05-19"}  # fmt: skip
H5 = {"identity_type": "1", "identity_no": "330922196309015018", "card_type": "1",
      "med_rec_no": "SD-1601013025", "perform_org_code": "2470", "perform_depart_code": "RIS",
      "perform_time_start": "2019-11-01", "perform_time_end": "2019-11-02"}  # fmt: skip
H5_ORDER = [
    "identity_type",
    "identity_no",
    "card_type",
    "card_no",
    "clinic_no",
    "med_rec_no",
    "perform_org_code",
    "exam_type",
    "perform_depart_code",
    "req_time_start",
    "req_time_end",
    "perform_time_start",
    "perform_time_end",
    "report_time_start",
    "report_time_end",
    "patient_class",
    "result_state_code",
]
DOCTOR_KEYS = ("work_no", "org_code", "med_rec_no", "visit_id", "accession_number", "id_card_no",
               "patient_name", "placer_order_no")  # fmt: skip
KEY24 = DES_KEY.encode().ljust(24, b"\0")


def direct_des(text: str) -> str:
    """What an integrator writes with pycryptodome alone."""
    cipher = DES3.new(KEY24, DES3.MODE_CBC, iv=IV)
    return base64.b64encode(cipher.encrypt(pad(text.encode(), 8))).decode()


def direct_clinic(now: datetime) -> str:
    body = {k: CLINIC.get(k, "") for k in DOCTOR_KEYS}
    token = direct_des(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    sign = hashlib.md5(f"{token}{SEV}{stamp}{MD5_KEY}".encode()).hexdigest()

    def q(value: str) -> str:
        return quote(value, safe="")

    return (
        f"{PORTAL}/clinicview/index.html?source=his&nosearch=true&start_time={CLINIC['start_time']}"
        f"&end_time={CLINIC['end_time']}&token={q(token)}&sev={q(SEV)}&timestamp={q(stamp)}"
        f"&sign={sign}"
    )


def direct_h5(now: datetime) -> str:
    values = [f"{n}={quote(direct_des(H5[n]), safe='') if H5.get(n) else ''}" for n in H5_ORDER]
    return (
        f"{PORTAL}/sharevisit/mobile/digitalimage/report-list?encrypt_type=1&nosearch=true&"
        + "&".join(values)
        + f"&token={TOKEN}"
    )


def rate(build: Callable[[datetime], str], seconds: float) -> float:
    """Links per second `build` makes in about `seconds`."""
    now = datetime.now(ZONE)
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            build(now)
        count += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or time.perf_counter() > deadline:
            return count / elapsed


def link_rates(rounds: int, seconds: float) -> dict[str, tuple[float, float]]:
    """Median links/s of (agent, direct) per page, alternating within each round."""
    from agent.uplinks.idcas_archive import links

    keys = links.LinkKeys(des_key=DES_KEY, md5_key=MD5_KEY, sev=SEV)

    def agent_clinic(now: datetime) -> str:
        return links.build("clinic-view", CLINIC, keys, portal=PORTAL, now=now)

    def agent_h5(now: datetime) -> str:
        return links.build("h5-report-list", H5, keys, portal=PORTAL, now=now, user_token=TOKEN)

    now = datetime.now(ZONE)
    assert agent_clinic(now) == direct_clinic(now), "the two clinic-view builders differ"
    assert agent_h5(now) == direct_h5(now), "the two H5 builders differ"
    found: dict[str, tuple[list[float], list[float]]] = {
        "clinic-view": ([], []),
        "h5-report-list": ([], []),
    }
    for _ in range(rounds):
        for page, ours, theirs in (
            ("clinic-view", agent_clinic, direct_clinic),
            ("h5-report-list", agent_h5, direct_h5),
        ):
            found[page][0].append(rate(ours, seconds))
            found[page][1].append(rate(theirs, seconds))
    return {p: (statistics.median(a), statistics.median(d)) for p, (a, d) in found.items()}


async def serve(port: int) -> None:
    """The agent side (a process of its own): the IDCAS open route on a platform listener."""
    from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
    from agent.uplinks.idcas_archive.routes import endpoints
    from agent.uplinks.idcas_archive.uplink import IdcasArchiveUplink
    from agent.web.listener import start_listener

    config = IdcasArchiveConfig.model_validate(
        {
            "type": "idcas_archive", "auth_url": "http://127.0.0.1:9/auth",
            "gateway_url": "http://127.0.0.1:9/api", "doc_gateway_url": "http://127.0.0.1:9/doc",
            "portal_url": PORTAL, "org_code": "2470", "client_id": "c", "client_secret": "s",
            "username": "u", "password": "p", "des_key": DES_KEY, "md5_key": MD5_KEY, "sev": SEV,
            "listener": {"enabled": True, "port": port, "allow": ["127.0.0.1/32"]},
        }
    )  # fmt: skip
    uplink = IdcasArchiveUplink("idcas", config)

    async def nothing(*_: Any) -> Any:
        raise AssertionError("not called")

    runner = await start_listener("idcas", endpoints("idcas", config, uplink), nothing, nothing)
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def open_latencies(port: int, clients: int, requests: int) -> list[float]:
    """Seconds each GET /idcas/open/clinic-view took, from `clients` concurrent keep-alive
    connections. A minimal HTTP/1.1 client (a request's bytes, the answer read to its length):
    an HTTP library's client would take as much CPU as the server it measures, on its cores."""
    target = f"/idcas/open/clinic-view?{urlencode(CLINIC)}"
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    times: list[float] = []

    async def client(count: int, keep: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 302"), head[:40]
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
                if keep:
                    times.append(time.perf_counter() - start)
        finally:
            writer.close()

    await asyncio.gather(*(client(5, False) for _ in range(clients)))  # warm-up
    await asyncio.gather(*(client(requests, True) for _ in range(clients)))
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idcas_links", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measure (1)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--requests", type=int, default=40, help="requests per client (40)")
    parser.add_argument("--latency-rounds", type=int, default=5, help="latency runs (5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    rates = link_rates(args.rounds, args.seconds)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.idcas_links", "--serve", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:  # its log lines, then "ready"
            if line.strip() == "ready":
                break
        runs = []
        for _ in range(args.latency_rounds):
            started = time.perf_counter()
            times = asyncio.run(open_latencies(port, args.clients, args.requests))
            runs.append((times, len(times) / (time.perf_counter() - started)))
    finally:
        server.terminate()
        server.wait()
    p99s = sorted(percentile(t, 0.99) * 1000 for t, _ in runs)
    p50 = statistics.median(percentile(t, 0.50) * 1000 for t, _ in runs)
    p99 = statistics.median(p99s)
    throughput = statistics.median(rate for _, rate in runs)
    rows = [
        f"| {page} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |"
        for page, (ours, theirs) in rates.items()
    ]
    section = "\n".join(
        [
            BEGIN,
            "## Seed 002 signed links (IDCAS)",
            "",
            "Links per second built by the agent (`links.build`: parameters checked against the",
            "seed's table, 3DES, MD5, URL) beside the same crypto written directly with",
            f"pycryptodome, alternately, the median of {args.rounds} rounds of {args.seconds:g} s;",
            f"then GET /idcas/open/clinic-view (302 to a freshly signed URL) from {args.clients}",
            f"concurrent clients, {args.requests} requests each, the listener in a process of its",
            "own. Targets (issue 18): ≥ 0.8× direct, p99 ≤ 20 ms.",
            "",
            f"* Command: `{command_line('bench.idcas_links', argv)}`",
            f"* Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"* Machine: nproc {cpu_count()} ({_cpu_model().split()[0]}),"
            f" Python {sys.version.split()[0]}",
            "",
            "| page | agent links/s | direct links/s | × direct |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"GET /idcas/open/clinic-view, {args.clients} concurrent clients: median of"
            f" {len(runs)} runs of {args.clients * args.requests:,} requests: p50 {p50:.1f} ms,"
            f" **p99 {p99:.1f} ms** (each run: {', '.join(f'{v:.1f}' for v in p99s)}),"
            f" {throughput:,.0f} requests/s; load average {load_average():.1f} (this machine"
            " is shared: the p99 follows the load).",
            END,
        ]
    )
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
