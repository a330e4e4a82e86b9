"""Retention under load: C-STORE latency while the spool's keeper purges delivered images, against
the same C-STOREs without purging, same run (issue 22 acceptance: p99 at most twice).

Run from the repository root: `.venv/bin/python -m bench.spool_retention` (see `--help`).
It prints a table and records it in docs/benchmarks.md; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.imaging.purger import SpoolKeeper
from agent.journal.writer import Journal
from bench.dicom_store import JournalContext
from bench.ingest import _cpu_model, command_line, cpu_count, filesystem, record
from drivers.dicom.scp import DicomScp, DicomScpConfig
from tests.dicom_files import make_ct_slices

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.spool_retention:begin -->"
END = "<!-- bench.spool_retention:end -->"
UPLINK = "city"
PER_STUDY = 100


class Context(JournalContext):
    """What the runtime gives the SCP and the keeper."""

    async def query(self, fn: Any) -> Any:
        return await self.journal.run(fn)


def seed(state: Path, images: int) -> None:
    """`images` delivered long ago: index rows, forwarded rows, delivered messages, 1 KiB files."""
    import sqlite3

    from agent.journal.database import open_database

    conn: sqlite3.Connection = open_database(state / "journal.db")
    folder = state / "spool" / "2020" / "01" / "01"
    folder.mkdir(parents=True)
    old, settled = "2020-01-01T00:00:00.000000+00:00", 1_577_840_000.0
    with conn:
        for n in range(images):
            study, sop = f"1.2.9.{n // PER_STUDY}", f"1.2.9.{n // PER_STUDY}.1.{n}"
            if n % PER_STUDY == 0:
                conn.execute(
                    "INSERT INTO im_studies (study_uid, patient_id, modalities, first_received,"
                    " last_received, state) VALUES (?, 'P', 'CT', ?, ?, 'stable')",
                    (study, old, old),
                )
                conn.execute(
                    "INSERT INTO im_series (series_uid, study_uid, modality) VALUES (?, ?, 'CT')",
                    (f"{study}.1", study),
                )
            (folder / f"{n}.dcm").write_bytes(b"\0" * 1024)
            conn.execute(
                "INSERT INTO im_instances (sop_uid, series_uid, study_uid, sop_class,"
                " transfer_syntax, number, path, size, received_at, calling_ae, event_id)"
                " VALUES (?, ?, ?, ?, '1.2.840.10008.1.2.1', ?, ?, 1024, ?, 'CT', ?)",
                (sop, f"{study}.1", study, CTImageStorage, n, f"2020/01/01/{n}.dcm", old, f"e{n}"),
            )
            conn.execute(
                "INSERT INTO im_forwarded (uplink, sop_uid, queued_at) VALUES (?, ?, ?)",
                (UPLINK, sop, old),
            )
            conn.execute(
                "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, state,"
                " created_at, next_attempt_at, settled_at) VALUES (?, 'dicom.instance', ?, ?, '{}',"
                " 'delivered', ?, ?, ?)",
                (UPLINK, f"study:{study}", f"dicom.instance:{sop}:e{n}", settled, settled, settled),
            )
    conn.close()


def send(port: int, files: list[Path], stop: threading.Event | None) -> list[float]:
    """C-STORE `files` one after another on one association (until `stop`); ms each."""
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    took = []
    try:
        for path in files:
            if stop is not None and stop.is_set():
                break
            started = time.perf_counter()
            status = assoc.send_c_store(path)
            took.append((time.perf_counter() - started) * 1000)
            assert int(status.Status) == 0, status
    finally:
        assoc.release()
    return took


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(directory: Path, images: int, stores: int, batch: int) -> dict[str, Any]:
    state = directory / "state"
    state.mkdir(parents=True)
    seed(state, images)
    corpus = make_ct_slices(directory / "corpus", 2 * stores, rows=64, columns=64)
    config = ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": [UPLINK], "keep_days": 30, "purge_batch": batch}
    )
    journal = await Journal.open(state / "journal.db", (ImagingHandler("imaging", config),))
    ctx = Context(state, journal)
    scp_config = DicomScpConfig.model_validate(
        {"type": "dicom_scp", "ae_title": "EDGE", "host": "127.0.0.1", "port": 0,
         "allowed_calling_aes": [], "min_free_mb": 0, "query_retrieve": False}
    )  # fmt: skip
    scp = DicomScp("bench", scp_config)
    serving = asyncio.create_task(scp.run(ctx))
    try:
        await asyncio.wait_for(scp.ready.wait(), 30)
        assert scp.address is not None
        port = scp.address[1]
        quiet = await asyncio.to_thread(send, port, corpus[:stores], None)
        keeper = SpoolKeeper("imaging", config)
        stop = threading.Event()
        started = time.perf_counter()
        during_task = asyncio.create_task(asyncio.to_thread(send, port, corpus[stores:], stop))
        root = state / "spool"
        purged = await keeper.purge_pass(ctx, root, critical=False)
        purge_seconds = time.perf_counter() - started
        stop.set()
        during = await during_task
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await ctx.close()
        await journal.close()
    return {
        "quiet": quiet,
        "during": during,
        "purged": purged,
        "purge_seconds": purge_seconds,
    }


def report(result: dict[str, Any], images: int, batch: int, directory: Path, argv: Any) -> str:
    quiet, during = result["quiet"], result["during"]
    rows = [
        ("C-STOREs alone (reference)", quiet),
        ("C-STOREs while purging", during),
    ]
    lines = [
        BEGIN,
        "## Spool retention under load (`bench.spool_retention`)",
        "",
        "The spool's keeper purges delivered images (index rows, forwarded rows and delivered",
        "messages seeded as a busy site leaves them, 1 KiB files) while one association sends",
        "64×64 CT images (Explicit VR LE) to the agent's SCP, each answered after its commit;",
        "the reference is the same SCP and journal sending as many images just before, without",
        "purging. Issue 22 asks that purging not push the C-STORE p99 above twice the",
        "reference.",
        "",
        f"* Command: `{command_line('bench.spool_retention', argv)}`",
        f"* Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"* Machine: nproc {cpu_count()} ({_cpu_model()}), shared with other work",
        f"* Filesystem: {filesystem(directory)}",
        f"* Purged: {result['purged']:,} of {images:,} images in {result['purge_seconds']:.1f} s"
        f" ({result['purged'] / result['purge_seconds']:,.0f} images/s), batches of {batch}",
        "",
        "| C-STORE | images | median ms | p99 ms | p99 × reference |",
        "|---|---:|---:|---:|---:|",
    ]
    reference = p(quiet, 0.99)
    for name, values in rows:
        lines.append(
            f"| {name} | {len(values):,} | {statistics.median(values):.2f} |"
            f" {p(values, 0.99):.2f} | {p(values, 0.99) / reference:.2f} |"
        )
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="delivered images to purge")
    parser.add_argument("--stores", type=int, default=2_000, help="C-STOREs in each phase")
    parser.add_argument("--batch", type=int, default=200, help="purge_batch")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the state goes")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="retention-", dir=args.dir))
    try:
        result = asyncio.run(run(directory, args.images, args.stores, args.batch))
        section = report(result, args.images, args.batch, directory, argv)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
