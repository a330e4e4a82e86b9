"""The lean path's one flush: answered once the file is sealed, released once it is journaled,
and an acknowledged image whose commit failed journaled by the next start."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import cast

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from agent.errors import JournalClosedError
from agent.events import Event
from agent.vocabulary.study_index import StudyIndex
from drivers.dicom.scp import DicomScp, DicomScpConfig
from drivers.dicom.seal import Sealed, read_seal
from tests.dicom_files import make_ct_slices
from tests.integration.test_dicom_scp import WAIT, RecordingContext, send_files, serving
from tests.unit.test_dicom_seal import FakeIndex

CONFIG = {
    "type": "dicom_scp",
    "ae_title": "EDGE",
    "host": "127.0.0.1",
    "port": 0,
    "allowed_calling_aes": [],
    "min_free_mb": 0,
    "query_retrieve": False,
}


class SubmittingContext(RecordingContext):
    """As the runtime: a closed journal refuses a submission at once, before any answer."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.loop = asyncio.get_running_loop()

    def submit_from_thread(self, event: Event) -> concurrent.futures.Future[bool]:
        if isinstance(self.failure, JournalClosedError):
            raise self.failure
        return asyncio.run_coroutine_threadsafe(self.emit(event), self.loop)


def lean_scp(index: FakeIndex | None = None) -> DicomScp:
    config = DicomScpConfig.model_validate(CONFIG)
    return DicomScp("scp", config, None if index is None else (lambda _: cast("StudyIndex", index)))


async def test_the_answer_waits_for_the_seal_and_the_release_for_the_commit(tmp_path: Path):
    files = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    ctx = RecordingContext(tmp_path / "state")
    ctx.gate = asyncio.Event()  # the journal's commit is held
    async with serving(lean_scp(), ctx) as port:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        assoc = await asyncio.to_thread(ae.associate, "127.0.0.1", port, ae_title="EDGE")
        statuses = [(await asyncio.to_thread(assoc.send_c_store, path)).Status for path in files]
        assert statuses == [0x0000, 0x0000]  # while neither commit has happened
        await ctx.wait_for(lambda c: c.entered == 2)
        assert ctx.events == []
        # Beside the two received, the empty files reserved for the next images.
        spooled = [p for p in (ctx.state_dir / "spool").rglob("*.dcm") if p.stat().st_size]
        assert [type(read_seal(p)) for p in spooled] == [Sealed, Sealed]  # durable as answered
        releasing = asyncio.ensure_future(asyncio.to_thread(assoc.release))
        done, _ = await asyncio.wait({releasing}, timeout=0.5)  # a bounded look for an early RP
        assert not done
        ctx.gate.set()
        async with asyncio.timeout(WAIT):
            await releasing
        assert len(ctx.kinds("dicom.stored")) == 2
        assert {e.id for e in ctx.events} == {p.stem for p in spooled}


async def test_an_image_whose_commit_failed_is_journaled_at_the_next_start(tmp_path: Path):
    files = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    ctx = SubmittingContext(tmp_path / "state")
    ctx.failure = OSError("journal is gone")
    async with serving(lean_scp(), ctx) as port:
        # Acknowledged: the file is durable and complete; only its event is not journaled.
        assert await asyncio.to_thread(send_files, port, files[:1]) == [0x0000]
        ctx.failure = JournalClosedError("the agent is stopping")
        assert await asyncio.to_thread(send_files, port, files[1:]) == [0xA700]
    assert ctx.events == []
    (kept,) = (ctx.state_dir / "spool").rglob("*.dcm")  # the refused one is deleted
    ctx.failure = None
    index = FakeIndex(ctx.state_dir / "spool")
    async with serving(lean_scp(index), ctx):
        pass
    (stored,) = ctx.kinds("dicom.stored")
    assert ctx.events[0].id == kept.stem
    assert stored["path"] == str(kept)
    assert stored["calling_ae"] == "PYSCU"
    assert stored["size"] == kept.stat().st_size
