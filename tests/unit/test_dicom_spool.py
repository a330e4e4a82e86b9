"""The spool's temporary files: what start-up cleans, what it must leave alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from drivers.dicom.store import Spool


def test_start_up_deletes_an_earlier_runs_partial_files_only(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.prepare()
    interrupted = spool.tmp / "0123456789abcdef.part"  # a receive cut short by a crash
    interrupted.write_bytes(b"half a data set")
    receiving = spool.new_file()  # another SCP of this agent, receiving right now
    receiving.write(b"DICM")
    try:
        assert Spool(tmp_path).prepare() == 1  # a second SCP starting on the same state dir
        assert not interrupted.exists()
        assert Path(receiving.name).exists()
    finally:
        receiving.discard()
    assert not any(spool.tmp.iterdir())


def test_a_committed_file_keeps_every_byte_under_its_dated_folder(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.prepare()
    received = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    temp = spool.write_temp(b"\0" * 128 + b"DICM" + b"rest")
    path = spool.commit(temp, received)
    assert path.parent == spool.root / "2026" / "11" / "24"
    assert path.read_bytes() == b"\0" * 128 + b"DICMrest"
    assert not temp.exists()
