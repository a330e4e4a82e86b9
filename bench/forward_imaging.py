"""Drain benchmark: a backlog of studies forwarded by C-STORE to a platform 20 ms away.

Run from the repository root: `.venv/bin/python -m bench.forward_imaging` (see `--help`).
The remote-imaging simulator (this process) answers each C-STORE after `--scp-delay`; the agent's
side (journal, dispatcher, uplink) runs in a child process per flush delay, so its CPU time and
flushes are its own. It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.policy import Backoff
from agent.journal.writer import Journal
from agent.simulators.remote_imaging import RemoteImagingSimulator
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from bench import flushdelay
from bench.ingest import (
    _cpu_model,
    _display,
    command_line,
    cpu_count,
    filesystem,
    load_average,
    record,
)
from drivers.dicom.forward import FORWARDING
from tests.integration.test_remote_imaging import (
    UPLINK,
    QueueMessages,
    city_platform,
    instance,
    new_study,
    push,
    write_instance,
)
from tests.unit.test_remote_imaging_codec import config_for, key_pair

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.forward_imaging:begin -->"
END = "<!-- bench.forward_imaging:end -->"
TARGET_IDEAL_RATIO = 0.8
TARGET_CPU_MS = 0.3
TARGET_FLUSHES = 0.2  # per forwarded image, at +5 ms per flush
SLOW_DELAY_MS = 5.0
DRAINING, DRAINED = "forward_imaging: draining", "forward_imaging: drained"


@dataclass(frozen=True, slots=True)
class Drain:
    """One backlog drained at one flush delay."""

    delay_ms: float
    images: int
    messages: int
    seconds: float
    cpu_seconds: float
    system_seconds: float  # the kernel's part of cpu_seconds
    flushes: int | None
    associations: int
    peak_rss_mb: float
    platform_cpu_seconds: float = 0.0  # the simulator's (this parent process's), same window
    answer_ms: float = 0.0  # median: a data set's end to the platform's answer (lean SCP)
    turnaround_ms: float = 0.0  # median: an answer to the next request on its association
    answer_mean_ms: float = 0.0
    turnaround_mean_ms: float = 0.0

    @property
    def platform_ms(self) -> float:
        return self.platform_cpu_seconds * 1000 / self.messages

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.messages

    @property
    def system_ms(self) -> float:
        return self.system_seconds * 1000 / self.messages


def make_corpus(folder: Path, studies: int, images: int) -> list[dict[str, Any]]:
    """Write `studies` × `images` small CT files; each study's push payload and image paths."""
    corpus = []
    for _ in range(studies):
        payload = new_study()
        files = [str(write_instance(folder, payload["study"])) for _ in range(images)]
        corpus.append({"push": payload, "files": files})
    return corpus


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def drain(args: argparse.Namespace, corpus: list[dict[str, Any]], key: str) -> Drain:
    """(Child) queue the corpus as a backlog, then forward it all; measure the forwarding."""
    workdir = Path(tempfile.mkdtemp(prefix="forward-", dir=args.dir))
    journal = await Journal.open(workdir / "journal.db", (QueueMessages(),))
    events = []
    for study in corpus:
        payload = study["push"]
        events.append(push(payload))
        events += [instance(Path(f), payload["study"]) for f in study["files"]]
    for first in range(0, len(events), 1000):  # the outage's backlog, before the platform is back
        await journal.ingest(events[first : first + 1000])
    config = config_for(
        base_url=args.base_url,
        dicom_host="127.0.0.1",
        dicom_port=args.dicom_port,
        concurrency=args.concurrency,
        send_run=args.send_run,
        public_key=key,
    )
    uplink = RemoteImagingUplink(UPLINK, config, FORWARDING)
    settings = DispatchSettings(
        concurrency=args.concurrency,
        send_run=args.send_run,
        backoff=Backoff(0.05, 1.0),
        breaker_threshold=1000,
    )
    dispatcher = Dispatcher(journal, uplink, settings)
    journal.on_commit(lambda uplinks: dispatcher.wake() if UPLINK in uplinks else None)
    flushes = flushdelay.flushes_so_far()
    cpu: float = time.process_time()
    system = os.times().system
    start = time.perf_counter()
    print(DRAINING, flush=True)  # the parent counts the platform's CPU from here
    task = asyncio.create_task(dispatcher.run())
    give_up = start + 60 + 10 * len(events) / ideal(args)
    # A benchmark's sampling, not a test's wait: the dispatcher has no "all done" to await.
    while dispatcher.counters.delivered + dispatcher.counters.dead < len(events):
        if time.perf_counter() > give_up:
            raise RuntimeError(f"stalled: {dispatcher.counters} after {give_up - start:.0f} s")
        await asyncio.sleep(0.05)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(DRAINED, flush=True)
    system = os.times().system - system
    after = flushdelay.flushes_so_far()
    await dispatcher.stop(grace=5.0)
    await task
    dead = dispatcher.counters.dead
    await journal.close()
    shutil.rmtree(workdir, ignore_errors=True)
    if dead:
        raise RuntimeError(f"{dead} messages became dead letters")
    images = len(events) - len(corpus)
    return Drain(
        delay_ms=flushdelay.active_delay_ms(),
        images=images,
        messages=len(events),
        seconds=seconds,
        cpu_seconds=cpu,
        system_seconds=system,
        flushes=None if flushes is None or after is None else after - flushes,
        associations=uplink.scu.associations,
        peak_rss_mb=_peak_rss_mb(),
    )


async def run_all(args: argparse.Namespace, corpus: Path, library: Path) -> list[Drain]:
    """Start the platform, then drain the backlog once per flush delay, each in a child."""
    results = []
    async with city_platform(dicom_lean=not args.pynetdicom_scp) as platform:
        platform.faults.dicom_delay = args.scp_delay
        platform.faults.dicom_keep = False
        for delay in args.flush_delays:
            for _ in range(args.rounds):
                results.append(await _drain_in_child(args, corpus, library, platform, delay))
    return results


async def _drain_in_child(
    args: argparse.Namespace,
    corpus: Path,
    library: Path,
    platform: RemoteImagingSimulator,
    delay: float,
) -> Drain:
    """One drain of the whole backlog in a child process at `delay` ms per flush."""
    with tempfile.NamedTemporaryFile(suffix=".json", dir=args.dir) as out:
        child = [
            sys.executable, "-m", "bench.forward_imaging", "--child-json", out.name,
            "--corpus", str(corpus), "--base-url", str(platform.base_url),
            "--public-key", str(corpus.with_name("key.pem")),
            "--dicom-port", str(platform.dicom_port), "--dir", str(args.dir),
            "--concurrency", str(args.concurrency), "--send-run", str(args.send_run),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *child, env=flushdelay.environment(library, delay), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        platform.dicom_timings()  # forget the previous drain's
        platform_cpu = await _platform_cpu(proc)
        if await proc.wait():
            raise RuntimeError(f"the drain at {flushdelay.label(delay)} failed")
        result = Drain(**json.loads(Path(out.name).read_text()))  # noqa: ASYNC240
        result = replace(result, platform_cpu_seconds=platform_cpu)
        timings = platform.dicom_timings()
        if timings is not None and timings[0] and timings[1]:
            answers, turnarounds = timings
            result = replace(
                result,
                answer_ms=statistics.median(answers) * 1000,
                turnaround_ms=statistics.median(turnarounds) * 1000,
                answer_mean_ms=statistics.fmean(answers) * 1000,
                turnaround_mean_ms=statistics.fmean(turnarounds) * 1000,
            )
    print(
        f"{flushdelay.label(delay)}: {result.rate:,.1f} images/s,"
        f" {result.cpu_ms:.2f} ms CPU/message ({result.system_ms:.2f} in the kernel),"
        f" {_flushes(result)} flushes/image,"
        f" {result.associations} associations, peak RSS {result.peak_rss_mb:.0f} MB;"
        f" the simulator {result.platform_ms:.2f} ms CPU/message; median answer"
        f" {result.answer_ms:.1f} ms (mean {result.answer_mean_ms:.1f}), turnaround"
        f" {result.turnaround_ms:.2f} ms (mean {result.turnaround_mean_ms:.2f})",
        flush=True,
    )
    return result


async def _platform_cpu(proc: asyncio.subprocess.Process) -> float:
    """This process's CPU seconds (the platform's) while the child drains."""
    assert proc.stdout is not None
    start = end = 0.0
    async for line in proc.stdout:
        if line.decode().strip() == DRAINING:
            start = time.process_time()
        elif line.decode().strip() == DRAINED:
            end = time.process_time()
    return end - start


def _bound(args: argparse.Namespace, r: Drain) -> str:
    """× ideal that one C-STORE's mean answer + turnaround allow per association."""
    if not r.answer_ms:
        return "?"
    return f"{args.scp_delay * 1000 / (r.answer_mean_ms + r.turnaround_mean_ms):.2f}"


def medians(results: list[Drain]) -> list[Drain]:
    """Per flush delay, the round with the median rate (the lower middle one of an even count)."""
    found = []
    for delay in dict.fromkeys(r.delay_ms for r in results):
        rounds = sorted((r for r in results if r.delay_ms == delay), key=lambda r: r.rate)
        found.append(rounds[(len(rounds) - 1) // 2])
    return found


def _flushes(d: Drain) -> str:
    return "?" if d.flushes is None else f"{d.flushes / d.images:.3f}"


def ideal(args: argparse.Namespace) -> float:
    """Images/s if every association always had a C-STORE waiting on the platform."""
    return float(args.concurrency / args.scp_delay)


def targets(args: argparse.Namespace, results: list[Drain]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target this run measured."""
    found = []
    for r in medians(results):
        ratio = r.rate / ideal(args)
        found.append(
            (
                f"{flushdelay.label(r.delay_ms)}: ≥ {TARGET_IDEAL_RATIO:g}× the ideal",
                f"{ratio:.2f}×",
                ratio >= TARGET_IDEAL_RATIO,
            )
        )
        found.append(
            (
                f"{flushdelay.label(r.delay_ms)}: ≤ {TARGET_CPU_MS:g} ms CPU per message",
                f"{r.cpu_ms:.2f} ms",
                r.cpu_ms <= TARGET_CPU_MS,
            )
        )
        if r.delay_ms == SLOW_DELAY_MS and r.flushes is not None:
            per = r.flushes / r.images
            found.append(
                (
                    f"{flushdelay.label(r.delay_ms)}: ≤ {TARGET_FLUSHES:g} flushes per image",
                    f"{per:.3f}",
                    per <= TARGET_FLUSHES,
                )
            )
    return found


def report(command: str, args: argparse.Namespace, results: list[Drain]) -> str:
    """The Markdown section recorded in docs/benchmarks.md."""
    rows = "\n".join(
        f"| {flushdelay.label(r.delay_ms)} | {r.images:,} | {r.seconds:.1f} | {r.rate:,.1f}"
        f" | {r.rate / ideal(args):.2f} | {r.cpu_ms:.2f} ({r.system_ms:.2f}) | {_flushes(r)}"
        f" | {r.associations}"
        f" | {r.peak_rss_mb:.0f} | {r.platform_ms:.2f}"
        f" | {r.answer_ms:.1f} / {r.answer_mean_ms:.1f}"
        f" | {r.turnaround_ms:.2f} / {r.turnaround_mean_ms:.2f}"
        f" | {_bound(args, r)} |"
        for r in results
    )
    verdicts = "\n".join(
        f"| {name} | {measured} | {'pass' if met else '**FAIL**'} |"
        for name, measured, met in targets(args, results)
    )
    scp = "pynetdicom" if args.pynetdicom_scp else "lean (`dicom_lean = true`)"
    return f"""{BEGIN}
## Forwarding a backlog (remote imaging, C-STORE)

A backlog of {args.studies} studies × {args.images} images (small CT files, one exam push per
study) is queued while the platform is "down", then forwarded to the remote-imaging simulator,
whose storage SCP answers each C-STORE after {args.scp_delay * 1000:g} ms (`dicom_delay`: a far
platform's round trip). The agent's side (journal, dispatcher, uplink; `concurrency =
{args.concurrency}`, `send_run = {args.send_run}`) runs in a child process, so CPU time
(user + system, all threads) and flushes (counted by `bench/flushdelay.c`) are its own, from
the first lease to the last settle. The ideal is every association always busy:
{args.concurrency} ÷ {args.scp_delay * 1000:g} ms = {ideal(args):,.0f} images/s. Each flush delay
is drained {args.rounds} times (one row each); the targets are checked on the median round. The
platform is the simulator's {scp} storage SCP, in the parent process; its CPU (SCP and HTTP
server) is counted over each drain. It also times, per C-STORE, the *answer* (from the data
set's end to its response: the {args.scp_delay * 1000:g} ms delay plus its own lateness) and
the agent's *turnaround* (from a response to the next request on that association: reading the
response, settling, leasing, the next header and send — and any wait for a core). Their mean
sum is what one association's C-STORE really takes, so {args.concurrency} ÷ (answer +
turnaround) is the rate these latencies allow ("latency bound", in × ideal; the association
set-up of each study and the exam pushes come on top).
Both processes share the machine's {cpu_count()} cores with whatever else runs on them (load
average before / after: {args.load_before} / {load_average():.2f}).

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()})
* Filesystem: {filesystem(args.dir)} (`df -T {_display(args.dir)}`)

| flush | images | s | images/s | × ideal | ms CPU/message (kernel) | flushes/image | associations \
| peak RSS MB | simulator ms CPU/message | answer ms p50 / mean | turnaround ms p50 / mean \
| latency bound × ideal |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

| target | measured | result |
|---|---|---|
{verdicts}
{END}"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.forward_imaging", description=__doc__)
    parser.add_argument("--studies", type=int, default=100, help="studies in the backlog (100)")
    parser.add_argument("--images", type=int, default=200, help="images per study (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="associations at once (8)")
    parser.add_argument("--send-run", type=int, default=32, help="messages per run (32)")
    parser.add_argument(
        "--scp-delay", type=float, default=0.02, help="seconds per C-STORE answer (0.02)"
    )
    parser.add_argument(
        "--flush-delays",
        type=lambda s: [float(d) for d in s.split(",")],
        default=[0.0, SLOW_DELAY_MS],
        help="ms added to every flush of the agent's side, one drain each (0,5)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="drains per flush delay (3)")
    parser.add_argument(
        "--pynetdicom-scp",
        action="store_true",
        help="the simulator's pynetdicom SCP instead of its lean one (dicom_lean = false)",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work folder (var/bench)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown to update")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--child-json", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--dicom-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--public-key", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.dir = args.dir.resolve()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.child_json:
        corpus = json.loads(Path(args.corpus).read_text())
        key = Path(args.public_key).read_text()
        Path(args.child_json).write_text(json.dumps(asdict(asyncio.run(drain(args, corpus, key)))))
        return
    with tempfile.TemporaryDirectory(prefix="forward-corpus-", dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"writing {args.studies} × {args.images} images ...", flush=True)
        corpus = folder / "corpus.json"
        corpus.write_text(json.dumps(make_corpus(folder, args.studies, args.images)))
        corpus.with_name("key.pem").write_text(key_pair().public_key().export_key().decode())
        library = flushdelay.build(folder)
        args.load_before = f"{load_average():.2f}"
        results = asyncio.run(run_all(args, corpus, library))
    for name, measured, met in targets(args, results):
        print(f"{'PASS' if met else 'FAIL'}  {name}: {measured}")
    if not args.no_record:
        record(args.output, report(command_line("bench.forward_imaging", argv), args, results),
               BEGIN, END)  # fmt: skip


if __name__ == "__main__":
    main()
