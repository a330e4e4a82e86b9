"""Backup while running, restore into a fresh state directory, resume: pending messages are sent,
delivered ones are not sent again, and every image the journal indexes is there (issue 22)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from functools import partial
from pathlib import Path

from agent.cli import main
from agent.config import load_config
from agent.events import Event
from agent.journal import outbox
from agent.journal.writer import Journal
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent
from agent.simulators.http_cloud import HttpCloud
from agent.uplinks.http.forward import ForwardEvents
from tests.integration.test_runtime import ReadyNotifier

IMAGE = "2026/12/07/0192a6e4.dcm"


def write_config(folder: Path, state: str, cloud: HttpCloud) -> Path:
    path = folder / f"{state}.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{state}"\nshutdown_timeout = 1.0\n'
        f'[uplinks.cloud]\ntype = "http"\nurl = "{cloud.url}/ingest"\n'
        f'token_url = "{cloud.url}/token"\nclient_id = "agent"\n'
        'client_secret = "s3cret-cloud-key"\nforward = ["synthetic.*"]\n',
        encoding="utf-8",
    )
    return path


def states(database: Path) -> dict[str, str]:
    """dedupe key (the event id) → state, of every message in a journal."""
    with closing(sqlite3.connect(database)) as conn:
        return dict(conn.execute("SELECT dedupe_key, state FROM outbox").fetchall())


async def test_restore_drill_sends_what_was_pending_and_nothing_delivered_again(
    tmp_path, cloud, capsys
):
    state = tmp_path / "state"
    state.mkdir()
    (state / "spool" / "2026" / "12" / "07").mkdir(parents=True)
    (state / "spool" / IMAGE).write_bytes(b"DICM image bytes")
    (state / "spool" / "tmp").mkdir()
    (state / "spool" / "tmp" / "being-written.part").write_bytes(b"half")
    (state / "exam-files").mkdir()
    (state / "exam-files" / "ab.pdf").write_bytes(b"%PDF report")
    journal = await Journal.open(
        state / "journal.db", handlers=(ForwardEvents("cloud", "cloud", ("synthetic.*",)),)
    )
    await journal.ingest([Event("synthetic.reading", f"s{n}", {"n": n}) for n in range(6)])
    leased = await journal.run(lambda c: outbox.lease(c, "cloud", 3, block_on_dead=False, now=9e12))
    for message in leased:
        await journal.run(partial(outbox.mark_delivered, message_id=message.id, response="ok"))

    # The backup is taken while the agent keeps committing.
    stop = asyncio.Event()

    async def keep_ingesting() -> None:
        n = 100
        while not stop.is_set():
            await journal.ingest([Event("synthetic.reading", f"s{n}", {"n": n})])
            n += 1
            await asyncio.sleep(0)

    writing = asyncio.create_task(keep_ingesting())
    backup = tmp_path / "backup"
    config = write_config(tmp_path, "state", cloud)
    code = await asyncio.to_thread(main, ["backup", "-c", str(config), str(backup)])
    stop.set()
    await writing
    await journal.close()
    assert code == 0 and "2 files" in capsys.readouterr().out  # the image and the report
    manifest = json.loads((backup / "MANIFEST.json").read_text(encoding="utf-8"))
    assert manifest["files"] == 2 and not (backup / "spool" / "tmp").exists()

    assert main(["restore", str(backup), "--state-dir", str(tmp_path / "restored")]) == 0
    assert main(["restore", str(backup), "--state-dir", str(tmp_path / "restored")]) == 1
    assert (tmp_path / "restored" / "spool" / IMAGE).read_bytes() == b"DICM image bytes"
    in_backup = states(tmp_path / "restored" / "journal.db")
    pending = {key for key, s in in_backup.items() if s == "pending"}
    delivered = {key for key, s in in_backup.items() if s == "delivered"}
    assert len(delivered) == 3 and len(pending) >= 3

    notifier = ReadyNotifier()
    agent = Agent(load_config(write_config(tmp_path, "restored", cloud), PLUGIN_KINDS), notifier)
    running = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await notifier.ready.wait()
            await cloud.wait_for(pending)
            while set(states(tmp_path / "restored" / "journal.db").values()) != {"delivered"}:
                await asyncio.sleep(0.05)
    finally:
        agent.request_stop()
        await running
    received = cloud.received.deliveries
    assert set(received) == pending  # nothing delivered before the backup is sent again
    assert all(times == 1 for times in received.values())


def test_a_corrupt_journal_is_refused_at_start_with_the_recovery_steps(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal.db").write_bytes(b"SQLite format 3\0" + b"\xff" * 8192)
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nstate_dir = "state"\n', encoding="utf-8")
    assert main(["run", "-c", str(config)]) == 1
    said = capsys.readouterr().err
    assert "integrity check" in said and "edge-agent restore" in said and ".recover" in said
