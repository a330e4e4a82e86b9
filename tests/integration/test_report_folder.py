"""Report PDFs from systems that can only export files: a watched folder; each PDF named for its
exam or lab report is stored with the local API's report files, journaled, and moved aside;
anything else is moved to rejected/ with its reason."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.lab.config import LabConfig
from agent.lab.handler import LabHandler
from drivers.report_folder import ReportFolder, ReportFolderConfig
from tests.helpers import eventually
from tests.integration.test_results_sharing import PDF
from tests.unit.test_imaging_index import config as imaging_config


class Context:
    def __init__(self, journal: Journal, state_dir: Path) -> None:
        self.journal = journal
        self.state_dir = state_dir

    async def emit(self, event: Any) -> bool:
        return (await self.journal.ingest([event]))[0]


async def test_pdfs_are_taken_for_their_exam_or_lab_report_and_the_rest_rejected(
    open_journal, tmp_path
):
    journal: Journal = await open_journal.open(
        handlers=(
            ImagingHandler("imaging", imaging_config()),
            LabHandler("lab", LabConfig(type="lab")),
        )
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "exam_E1.pdf").write_bytes(PDF)
    (inbox / "lab_L1.pdf").write_bytes(PDF + b"%lab\n")
    (inbox / "notes.txt").write_text("x")
    (inbox / "exam_E2.pdf").write_bytes(b"\xff\xd8\xff not a pdf")
    config = ReportFolderConfig(type="report_folder", path=inbox, settle=0, scan_interval=0.05)
    driver = ReportFolder("exports", config)
    task = asyncio.create_task(driver.run(Context(journal, tmp_path / "state")))
    try:
        await eventually(lambda: _done(driver))
    finally:
        task.cancel()
    assert driver.counters == {"taken": 2, "name": 1, "not_pdf": 1}
    exam_rows = await journal.run(
        lambda c: c.execute("SELECT exam_no, name, kind FROM im_exam_files").fetchall()
    )
    lab_rows = await journal.run(
        lambda c: c.execute("SELECT report_no, name FROM lab_files").fetchall()
    )
    exam_name = f"{hashlib.sha256(PDF).hexdigest()}.pdf"
    assert exam_rows == [("E1", exam_name, "report_pdf")]
    assert [r[0] for r in lab_rows] == ["L1"]
    assert (tmp_path / "state" / "exam-files" / exam_name).read_bytes() == PDF
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["exam_E1.pdf", "lab_L1.pdf"]
    rejected = sorted(p.name for p in (inbox / "rejected").iterdir())
    assert rejected == [
        "exam_E2.pdf",
        "exam_E2.pdf.reason.txt",
        "notes.txt",
        "notes.txt.reason.txt",
    ]
    assert "not a PDF" in (inbox / "rejected" / "exam_E2.pdf.reason.txt").read_text()


async def _done(driver: ReportFolder) -> bool:
    return sum(driver.counters.values()) >= 4
