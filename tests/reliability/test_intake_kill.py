"""The lean intake path killed between each pair of its steps (fault-injection points, not
timing): after a restart every acknowledged image is indexed, at most the one image in flight
is stored twice, and `edge-agent spool audit` is clean."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from agent.imaging.audit import audit_spool
from drivers.dicom.recovery import complete_sop_uid
from tests.agent_process import AgentProcess
from tests.dicom_files import make_ct_slices
from tests.helpers import eventually
from tests.platform_routes import free_port

IMAGES = 8
# Every step of the path, in order, with the time it is reached at which the agent dies:
# creating files ahead (the refill after the first image), the data set complete, the seal in
# the page cache, the file durable, the answer sent, and the journal's commit done.
KILL_POINTS = {
    "dicom.reserved": 2,
    "dicom.received": 4,
    "dicom.sealed": 4,
    "dicom.synced": 4,
    "dicom.answered": 4,
    "dicom.committed": 3,
}
# What the restart's scan must find (a process killed keeps the page cache: a sealed file is
# intact); the other points leave nothing to find, or race with the commit.
RECOVERED = {
    "dicom.received": "deleted",  # never sealed: never acknowledged
    "dicom.sealed": "journaled",
    "dicom.synced": "journaled",
}


def write_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "state"
shutdown_timeout = 5
[log]
format = "json"
[domains.imaging]
type = "imaging"
forward_to = []
[sources.pacs]
type = "dicom_scp"
ae_title = "EDGE"
host = "127.0.0.1"
port = {port}
allowed_calling_aes = []
min_free_mb = 0
query_retrieve = false
""",
        encoding="utf-8",
    )
    return config


def send(port: int, files: list[Path]) -> list[Path]:
    """C-STORE `files` one by one on one association until one is not acknowledged; the
    acknowledged ones (a modality resends the others)."""
    ae = AE(ae_title="CT01")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    acked = []
    try:
        for path in files:
            answer = assoc.send_c_store(path)
            if getattr(answer, "Status", None) != 0x0000:
                break
            acked.append(path)
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
    return acked


async def start(config: Path, tmp_path: Path, port: int, env: dict[str, str]) -> AgentProcess:
    agent = AgentProcess(config, tmp_path, env)
    await agent.start()

    async def listening() -> bool:  # the start-up scan is over before the port is bound
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await eventually(listening, timeout=30)
    return agent


@pytest.mark.parametrize("point", list(KILL_POINTS))
async def test_killed_at_each_step_nothing_acknowledged_is_lost(tmp_path: Path, point: str):
    files = make_ct_slices(tmp_path / "in", IMAGES, rows=64, columns=64)
    port = free_port()
    config = write_config(tmp_path, port)
    env = {"EDGE_AGENT_KILL_AT": f"{point}:{KILL_POINTS[point]}"}
    agent = await start(config, tmp_path, port, env)
    acked = await asyncio.to_thread(send, port, files)
    async with asyncio.timeout(30):
        assert await agent.proc.wait() == -9  # type: ignore[union-attr]  # killed at the point
    await agent.kill()
    assert len(acked) < IMAGES

    agent = await start(config, tmp_path, port, {})
    resent = await asyncio.to_thread(send, port, files[len(acked) :])
    assert resent == files[len(acked) :]
    assert await agent.stop() == 0
    lines = [json.loads(line) for line in (await agent.output()).splitlines()]
    recovered = [line for line in lines if line["event"] == "dicom.spool_recovered"]
    if point in RECOVERED:
        assert recovered and recovered[0][RECOVERED[point]] == 1, recovered

    state = tmp_path / "state"
    with closing(sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True)) as conn:
        indexed = dict(conn.execute("SELECT sop_uid, path FROM im_instances").fetchall())
        events = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'dicom.stored'").fetchone()
    sop_uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]
    assert set(indexed) == set(sop_uids)  # every acknowledged image, and every one resent
    for sop_uid, stored in indexed.items():
        assert dcmread(state / "spool" / stored).SOPInstanceUID == sop_uid
    on_disk = [p for p in (state / "spool").rglob("*.dcm") if p.stat().st_size]
    assert len(on_disk) - IMAGES <= 1  # the image in flight at the kill, stored and resent
    assert events[0] - IMAGES <= 1
    found = audit_spool(state, read_sop_uid=complete_sop_uid, min_age=0)
    assert found.healthy, found
    assert found.reserved == 0  # a clean stop gives back the files created ahead
    assert len(found.copies) <= 1
