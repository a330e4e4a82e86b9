"""`edge-agent spool audit` over a spool the DICOM SCP filled and a journal that indexed it."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from agent.cli import main
from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from bench.dicom_store import JournalContext
from tests.dicom_files import make_ct_slices
from tests.integration.test_dicom_scp import make_scp, send_files, serving
from tests.unit.test_imaging_index import exam, exam_doc


async def receive(tmp_path: Path, duplicates: str, *batches: list[Path]) -> Journal:
    """Run the SCP over a fresh journal and C-STORE each batch on its own association."""
    imaging = ImagingConfig.model_validate(
        {"type": "imaging", "duplicates": duplicates, "forward_to": ["city"]}
    )
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    journal = await Journal.open(
        state / "journal.db", handlers=(ImagingHandler("imaging", imaging),)
    )
    async with serving(make_scp(), JournalContext(state, journal)) as port:
        for batch in batches:
            assert await asyncio.to_thread(send_files, port, batch) == [0] * len(batch)
    return journal


async def queue_for_forwarding(journal: Journal, study: str) -> None:
    """Join an exam to the study and make it stable: its images are queued for the uplink."""
    later = datetime.now(UTC) + timedelta(minutes=2)
    await journal.ingest([exam(exam_doc(studyUID=study), at=later)])
    last = (
        await journal.run(lambda c: c.execute("SELECT last_received FROM im_studies").fetchone())
    )[0]
    stable = {"study_uid": study, "last_received": last}
    await journal.ingest([Event("imaging.study_stable", "imaging", stable, received_at=later)])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nstate_dir = "state"\n', encoding="utf-8")
    return path


def audit(config: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, Any]:
    capsys.readouterr()  # the SCP's log lines
    code = main(["spool", "audit", "-c", str(config), "--json", *options])
    return code, json.loads(capsys.readouterr().out)


def indexed_paths(tmp_path: Path) -> dict[str, str]:
    """SOP Instance UID → the file the index points at (it keeps them relative to the spool)."""
    with closing(sqlite3.connect(tmp_path / "state" / "journal.db")) as conn:
        rows = conn.execute("SELECT sop_uid, path FROM im_instances").fetchall()
    return {sop: str(tmp_path / "state" / "spool" / path) for sop, path in rows}


def sop_uid(path: Path | str) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


async def test_a_clean_spool_passes_and_each_kind_of_disagreement_is_found(
    tmp_path, config, capsys
):
    slices = make_ct_slices(tmp_path / "in", 5, rows=8, columns=8)
    sent, resent, never_sent = slices[:3], slices[:1], slices[3]
    journal = await receive(tmp_path, "keep_first", sent)
    await journal.close()

    code, clean = audit(config, capsys, "--min-age", "0")
    assert code == 0
    assert (clean["files"], clean["missing"], clean["copies"], clean["unindexed"]) == (
        3,
        [],
        [],
        [],
    )

    journal = await receive(tmp_path, "keep_first", resent)  # keep_first: a copy nothing uses
    await journal.close()
    by_sop = indexed_paths(tmp_path)
    folder = Path(by_sop[sop_uid(sent[0])]).parent
    left_behind = folder / "commit-timed-out.dcm"  # what a timed-out commit leaves: never indexed
    shutil.copyfile(never_sent, left_behind)
    (folder / "garbage.dcm").write_bytes(b"not a dataset")
    Path(by_sop[sop_uid(sent[1])]).unlink()
    with open(by_sop[sop_uid(sent[2])], "ab") as changed:
        changed.write(b"\0\0")

    code, found = audit(config, capsys)  # an hour's grace: nothing unreferenced is judged yet
    assert code == 1 and found["recent"] == 3 and found["copies"] == found["unindexed"] == []
    code, found = audit(config, capsys, "--min-age", "0")
    assert code == 1
    assert found["files"] == 5  # 3 received + 1 copy + the left-behind file + garbage - 1 lost
    assert [row["sop_uid"] for row in found["missing"]] == [sop_uid(sent[1])]
    assert [row["sop_uid"] for row in found["changed"]] == [sop_uid(sent[2])]
    assert [sop_uid(path) for path in found["copies"]] == [sop_uid(sent[0])]
    assert found["unindexed"] == [str(left_behind)]
    assert found["unreadable"] == [str(folder / "garbage.dcm")]

    capsys.readouterr()
    assert main(["spool", "audit", "-c", str(config), "--min-age", "0"]) == 1
    report = capsys.readouterr().out
    assert f"missing: {by_sop[sop_uid(sent[1])]}" in report
    assert f"not indexed: {left_behind} (send it to the agent again" in report

    code, found = audit(config, capsys, "--min-age", "0", "--delete-copies")
    assert found["deleted"] == 1 and not Path(found["copies"][0]).exists()
    assert left_behind.exists() and Path(by_sop[sop_uid(sent[0])]).exists()


async def test_an_overwritten_file_still_queued_for_an_uplink_is_not_a_copy(
    tmp_path, config, capsys
):
    first, *_ = slices = make_ct_slices(tmp_path / "in", 2, rows=8, columns=8)
    journal = await receive(tmp_path, "overwrite", slices)
    study = str(dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    await queue_for_forwarding(journal, study)
    await journal.close()
    queued = indexed_paths(tmp_path)[sop_uid(first)]

    journal = await receive(tmp_path, "overwrite", [first])  # the index now points at the new file
    await journal.close()
    assert indexed_paths(tmp_path)[sop_uid(first)] != queued

    code, found = audit(config, capsys, "--min-age", "0")
    assert code == 0 and found["files"] == 3 and found["copies"] == []
