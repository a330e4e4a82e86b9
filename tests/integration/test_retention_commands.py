"""`edge-agent spool purge` (a dry run unless --apply, never an undelivered image) and
`edge-agent journal compact`, on a real journal and spool."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from agent.cli import EXIT_FAILURE, main
from agent.imaging.handler import ImagingHandler
from agent.journal import database
from agent.journal.readers import Readers
from agent.runtime import StateDirLock
from tests.unit.test_imaging_index import config as imaging_config
from tests.unit.test_journal_retention import plain_journal
from tests.unit.test_spool_retention import T0, Site

CONFIG = """[agent]
state_dir = "state"

[uplinks.city]
type = "http"
url = "https://cloud.example/ingest"

[domains.imaging]
type = "imaging"
forward_to = ["city"]
"""


async def run(*argv: str) -> int:
    """The command as a shell runs it (its own event loop, here in a thread)."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "state").mkdir()
    return path


async def test_spool_purge_lists_then_deletes_only_delivered_images(
    open_journal, config, tmp_path, capsys
):
    state = tmp_path / "state"
    handler = ImagingHandler("imaging", imaging_config(forward_to=["city"]))
    journal = await open_journal.open(state / "journal.db", handlers=(handler,))
    site = Site(journal, state, Readers(journal.path))
    files = await site.receive("1", "2", "3")
    await site.settle("1", "delivered", T0)
    await site.settle("3", "dead", T0)  # "2" stays pending
    await site.readers.close()
    await journal.close()

    capsys.readouterr()
    assert await run("spool", "purge", "-c", str(config), "--keep-days", "0") == 0
    assert capsys.readouterr().out.startswith("1 images (0.0 MB) may lose their file now")
    assert all(file.exists() for file in files.values())  # a dry run deletes nothing

    with StateDirLock(state):  # the agent is running: its own keeper purges
        assert await run("spool", "purge", "-c", str(config), "--apply") == EXIT_FAILURE
    assert "another edge-agent is running" in capsys.readouterr().err

    assert await run("spool", "purge", "-c", str(config), "--keep-days", "0", "--apply") == 0
    assert "1 image files deleted" in capsys.readouterr().out
    assert [sop for sop, file in files.items() if file.exists()] == ["2", "3"]
    with closing(sqlite3.connect(state / "journal.db")) as conn:
        purged = conn.execute("SELECT COUNT(*) FROM im_instances WHERE purged_at IS NOT NULL")
        assert purged.fetchone() == (1,)
        kinds = conn.execute("SELECT kind FROM events WHERE kind = 'imaging.purge'").fetchall()
        assert kinds == [("imaging.purge",)]  # journaled as the agent's keeper does


def test_journal_compact_converts_an_old_journal_once(config, tmp_path, capsys):
    path = tmp_path / "state" / "journal.db"
    plain_journal(path)

    assert main(["journal", "compact", "-c", str(config)]) == 0
    assert "compacted" in capsys.readouterr().out
    with closing(sqlite3.connect(path)) as conn:
        assert database.incremental(conn)
    assert main(["journal", "compact", "-c", str(config)]) == 0
    assert "already incremental" in capsys.readouterr().out
