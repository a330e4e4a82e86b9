"""A state directory moved (or restored) elsewhere: every image is found where it now is, and
the images still waiting for an uplink are sent from there (issue 22 item 8)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from agent.imaging.forwarding import rebase_queued_files
from agent.imaging.instances import study_files
from agent.imaging.study_index import StudyIndexReader
from agent.journal.database import open_database
from tests.dicom_files import make_ct_slices
from tests.integration.test_spool_audit import audit, queue_for_forwarding, receive


async def test_a_moved_state_directory_finds_every_image_and_re_points_what_is_queued(
    tmp_path, capsys
):
    slices = make_ct_slices(tmp_path / "in", 3, rows=8, columns=8)
    study = str(dcmread(slices[0], stop_before_pixels=True).StudyInstanceUID)
    journal = await receive(tmp_path, "keep_first", slices)
    await queue_for_forwarding(journal, study)
    await journal.close()

    moved = tmp_path / "restored" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(tmp_path / "state", moved)
    database = moved / "journal.db"
    with closing(sqlite3.connect(database)) as conn:
        stored = [row[0] for row in conn.execute("SELECT path FROM im_instances")]
        files = study_files(conn, study)
    assert all(not Path(path).is_absolute() for path in stored)  # relative to the spool
    assert len(files) == 3 and all(Path(f.path).is_relative_to(moved) for f in files)
    assert all(Path(f.path).exists() for f in files)

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    moves = StudyIndexReader(database).instances(identifier, patient_root=False)
    assert len(moves) == 3 and all(Path(path).exists() for *_, path in moves)  # C-MOVE

    config = moved.parent / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{moved.name}"\n', encoding="utf-8")
    code, found = audit(config, capsys, "--min-age", "0")
    assert code == 0 and found["missing"] == [] and found["files"] == 3

    conn = open_database(database)  # what the agent's start-up job does
    try:
        queued = conn.execute(
            "SELECT payload FROM outbox WHERE kind = 'dicom.instance' AND state = 'pending'"
        ).fetchall()
        assert len(queued) == 3 and not Path(json.loads(queued[0][0])["path"]).exists()
        assert rebase_queued_files(conn) == 3
        assert rebase_queued_files(conn) == 0  # once re-pointed, left alone
        for (payload,) in conn.execute("SELECT payload FROM outbox WHERE kind = 'dicom.instance'"):
            assert Path(json.loads(payload)["path"]).exists()
    finally:
        conn.close()
