"""The spool's temporary files: what start-up cleans, what it must leave alone."""

from __future__ import annotations

import errno
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


def test_a_receiving_file_stops_at_the_reserve_and_gives_the_space_back(tmp_path: Path):
    probes: list[int] = []
    spool = Spool(tmp_path, reserve_mb=100)
    spool.prepare()
    receiving = spool.new_file()
    chunk = bytes(64 * 1024)

    def below_reserve() -> bool:
        probes.append(receiving.size)
        return receiving.size >= 2 * 1024 * 1024  # the reserve is reached after 2 MiB

    receiving.below_reserve = below_reserve
    for _ in range(64):  # 4 MiB offered; writing never raises into pynetdicom's thread
        receiving.write(chunk)
    assert probes == [0, 1024 * 1024, 2 * 1024 * 1024]  # once per MiB, not per fragment
    assert receiving.error is not None and receiving.error.errno == errno.ENOSPC
    assert not Path(receiving.name).exists()  # deleted at the reserve, not at the end
    receiving.discard()  # what the handler does next: harmless


def test_a_free_space_probe_that_fails_stops_the_file_too(tmp_path: Path):
    spool = Spool(tmp_path, reserve_mb=100)
    spool.prepare()
    receiving = spool.new_file()

    def unreadable() -> bool:
        raise OSError(errno.EIO, "statvfs failed")

    receiving.below_reserve = unreadable
    receiving.write(b"DICM")
    assert receiving.error is not None and receiving.error.errno == errno.EIO
    assert not Path(receiving.name).exists()
