"""Sealed spool files and the start-up scan: what a crash can leave, what start-up makes of it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence, Set
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import _read_file_meta_info, read_preamble

from agent.events import Event
from drivers.dicom import wire
from drivers.dicom.recovery import MARK, recover_spool, scan
from drivers.dicom.reservoir import LIVE, Reservoir
from drivers.dicom.seal import Sealed, meta_elements, read_seal
from drivers.dicom.store import SealedFile, Spool
from tests.dicom_files import make_ct_slices

RECEIVED = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC)


def dataset_of(path: Path) -> tuple[str, str, bytes]:
    """(SOP class, SOP instance, the data set's bytes) of a DICOM file."""
    meta = dcmread(path, stop_before_pixels=True).file_meta
    with path.open("rb") as fp:
        read_preamble(fp, False)
        _read_file_meta_info(fp)
        return str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID), fp.read()


def receive(spool: Spool, source: Path, *, seal: bool = True) -> SealedFile:
    """What the lean acceptor does with one C-STORE: meta, data set in pieces, seal."""
    sop_class, sop_uid, data = dataset_of(source)
    meta = wire.file_meta(
        sop_class, sop_uid, "1.2.840.10008.1.2.1", "1.2.3", "", extra=meta_elements()
    )
    file = spool.sealed_file(meta)
    for start in range(0, len(data), 1000):
        file.write(data[start : start + 1000])
    if seal:
        file.seal(RECEIVED, "CT01")
    else:
        file.close()
    return file


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "state")
    spool.prepare()
    yield spool
    spool.reservoir.close()


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return make_ct_slices(tmp_path / "in", 4, rows=64, columns=64)


def test_a_sealed_file_is_a_dicom_file_that_says_when_and_from_whom(
    spool: Spool, images: list[Path]
):
    file = receive(spool, images[0])
    assert file.path.parent.parent.parent.parent == spool.root  # Y/M/D, no rename
    assert uuid.UUID(file.path.stem).version == 7
    assert read_seal(file.path) == Sealed(RECEIVED, "CT01", file.path.stat().st_size)
    stored = dcmread(file.path)
    assert stored.SOPInstanceUID == dcmread(images[0]).SOPInstanceUID
    assert str(stored.file_meta.PrivateInformationCreatorUID).startswith("2.25.")
    assert dataset_of(file.path)[2] == dataset_of(images[0])[2]  # the peer's bytes, as sent
    assert str(file.path) not in LIVE


@pytest.mark.parametrize(
    ("damage", "state"),
    [
        (lambda raw: raw[:-1], "torn"),  # the last page never reached the disk
        (lambda raw: raw[:600] + bytes(512) + raw[1112:], "torn"),  # a page inside reads as zeros
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "torn"),
        (lambda raw: raw[:200], "unsealed"),  # the meta half-written: the seal is not there
        (lambda raw: b"", "reserved"),
    ],
)
def test_a_file_its_seal_does_not_match_was_never_acknowledged(
    spool: Spool, images: list[Path], damage, state: str
):
    file = receive(spool, images[0])
    file.path.write_bytes(damage(file.path.read_bytes()))
    assert read_seal(file.path) == state


def test_an_unsealed_file_and_a_file_from_before_seals(
    spool: Spool, images: list[Path], tmp_path: Path
):
    unsealed = receive(spool, images[0], seal=False)
    assert read_seal(unsealed.path) == "unsealed"
    legacy = (
        spool.root / "2026" / "01" / "02" / f"{uuid.uuid4()}.dcm"
    )  # the renamed files of before
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(images[1].read_bytes())
    assert read_seal(legacy) == "legacy"


def test_the_reservoir_hands_out_durable_empty_files_and_takes_back_the_unused(tmp_path: Path):
    (tmp_path / "spool").mkdir()
    reservoir = Reservoir(tmp_path / "spool", batch=4, low=2)
    first = reservoir.take()  # none ready: made now (one folder flush), a refill starts
    assert first.exists() and first.stat().st_size == 0
    taken = [reservoir.take() for _ in range(6)]
    assert len({first, *taken}) == 7
    left = reservoir.close()
    on_disk = set((tmp_path / "spool").rglob("*.dcm"))
    assert on_disk == {first, *taken}  # the unused ones are deleted
    assert reservoir.created == 7 + left
    assert reservoir.folder_flushes < reservoir.created


class FakeIndex:
    """The study index as the scan asks it: by folder and by SOP Instance UID."""

    def __init__(self, root: Path, files: Sequence[Path] = (), sop_uids: Set[str] = frozenset()):
        self.paths = {p.relative_to(root).as_posix() for p in files}
        self.sop_uids = set(sop_uids)
        self.asked: list[str] = []

    def indexed_files(self, folder: str) -> set[str]:
        self.asked.append(folder)
        return {p for p in self.paths if p.startswith(folder + "/")}

    def indexed_instances(self, sop_uids: list[str]) -> set[str]:
        return self.sop_uids & set(sop_uids)


def test_the_scan_journals_what_the_journal_lacks_and_nothing_acknowledged_is_lost(
    spool: Spool, images: list[Path]
):
    acknowledged = receive(spool, images[0])  # crash after the answer, before the commit
    indexed = receive(spool, images[1])  # committed
    torn = receive(spool, images[2])  # sealed, but a page was lost: never acknowledged
    torn.path.write_bytes(torn.path.read_bytes()[:-100])
    unsealed = receive(spool, images[3], seal=False)  # crash while receiving
    reserved = spool.reservoir.take()  # created ahead, never used
    copy = receive(spool, images[1])  # sent again after a crash before its answer
    spool.reservoir.close()
    LIVE.clear()  # a new process: nothing of these is being received
    purged = indexed.path.with_name(f"{uuid.uuid4()}.dcm")  # before seals, and purged since
    purged.write_bytes(images[2].read_bytes())
    legacy = indexed.path.with_name(f"{uuid.uuid4()}.dcm")  # a commit that timed out, before seals
    legacy.write_bytes(images[3].read_bytes())
    garbage = indexed.path.with_name(f"{uuid.uuid4()}.dcm")
    garbage.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    index = FakeIndex(spool.root, [indexed.path, purged], {dcmread(images[1]).SOPInstanceUID})

    found = scan(spool, index, "scp", since=None)

    stored = {e.id: e for e in found.events if e.kind == "dicom.stored"}
    assert set(stored) == {acknowledged.path.stem, legacy.stem}
    event = stored[acknowledged.path.stem]
    assert event.occurred_at == RECEIVED
    assert event.payload["path"] == str(acknowledged.path)
    assert event.payload["calling_ae"] == "CT01"
    assert event.payload["size"] == acknowledged.path.stat().st_size
    assert event.payload["sop_instance_uid"] == dcmread(images[0]).SOPInstanceUID
    rejected = [e.payload for e in found.events if e.kind == "dicom.rejected"]
    assert len(rejected) == 2 and "torn" in {r["reason"] for r in rejected}
    assert found.quarantined == 2 and found.copies == 1
    assert found.deleted == 1 and found.reserved >= 1  # and the others created ahead
    assert not torn.path.exists() and not garbage.exists()
    assert not unsealed.path.exists() and not reserved.exists()
    assert indexed.path.exists() and purged.exists() and copy.path.exists()  # indexed, or a copy
    assert len(list(spool.quarantine_dir.iterdir())) == 2


async def test_an_acknowledged_image_is_journaled_at_start_under_the_id_it_was_sent_with(
    spool: Spool, images: list[Path]
):
    first = receive(spool, images[0])
    LIVE.clear()
    emitted: list[Event] = []

    async def emit(event: Event) -> bool:
        emitted.append(event)
        return True

    index = FakeIndex(spool.root)
    found = await recover_spool(spool, index, "scp", emit)
    assert found.journaled == 1 and [e.id for e in emitted] == [first.path.stem]
    assert (spool.root / MARK).exists()
    # The next start looks only at folders changed since (and a day before): here, the same one.
    found = await recover_spool(spool, index, "scp", emit)
    assert found.journaled == 1 and len(index.asked) == 2
    os.utime(first.path.parent, (0, 0))  # a folder untouched for long is not read again
    found = await recover_spool(spool, index, "scp", emit)
    assert len(index.asked) == 2
