"""The spool and durable files on Windows' terms, checked on Linux through the same code paths:
no `statvfs`, no directory to open for fsync, a file flushed only through a writable handle."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import drivers.dicom.store
import drivers.files
from drivers.dicom.store import Spool
from drivers.files import fsync_dir, sync_file, write_durably

MIB = 1024 * 1024
RECEIVED = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
# Bytes a text-mode write would change on Windows: LF, CRLF and Ctrl-Z (text mode's end of file).
PART10 = b"\0" * 128 + b"DICM" + b"\n\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every fsync/fdatasync: ("dir" or "file", the descriptor's access mode)."""
    calls: list[tuple[str, int]] = []
    real_fsync, real_fdatasync = os.fsync, getattr(os, "fdatasync", os.fsync)

    def record(real: object) -> object:
        def sync(fd: int) -> None:
            kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
            calls.append((kind, _access_mode(fd)))
            real(fd)  # type: ignore[operator]

        return sync

    monkeypatch.setattr(os, "fsync", record(real_fsync))
    monkeypatch.setattr(os, "fdatasync", record(real_fdatasync), raising=False)
    monkeypatch.setattr(drivers.files, "_sync_data", record(real_fdatasync))
    return calls


def _access_mode(fd: int) -> int:
    if sys.platform == "win32":  # these tests run on Linux; Windows has no F_GETFL
        raise NotImplementedError
    else:
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def test_the_spool_measures_free_space_with_the_call_windows_has_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    asked: list[str] = []

    def disk_usage(path: str | Path) -> shutil._ntuple_diskusage:
        asked.append(str(path))  # GetDiskFreeSpaceExW on Windows, statvfs here
        return shutil._ntuple_diskusage(10 * MIB**2, 10 * MIB**2 - 50 * MIB, 50 * MIB)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    spool = Spool(tmp_path, reserve_mb=100)
    spool.prepare()
    assert spool.free_mb() == 50
    assert spool.below_reserve()
    assert not Spool(tmp_path, reserve_mb=10).below_reserve()
    assert set(asked) == {str(spool.root)}


def test_without_directory_fsync_a_committed_file_keeps_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: list[tuple[str, int]]
):
    monkeypatch.setattr(drivers.files, "DIRECTORY_FSYNC", False)  # Windows: NTFS journals it
    monkeypatch.delattr(os, "O_DIRECTORY")
    spool = Spool(tmp_path)
    spool.prepare()
    path = spool.commit(spool.write_temp(PART10), RECEIVED)
    kept = spool.quarantine(spool.write_temp(PART10), RECEIVED)
    assert path.read_bytes() == PART10 and kept.read_bytes() == PART10
    assert path.parent == spool.root / "2026" / "12" / "07"
    assert [kind for kind, _ in synced] == ["file", "file"]  # the data, never a folder


def test_on_posix_the_new_folders_and_the_rename_are_fsynced(
    tmp_path: Path, synced: list[tuple[str, int]]
):
    spool = Spool(tmp_path)
    spool.prepare()
    spool.commit(spool.write_temp(PART10), RECEIVED)
    # The file, then each new folder's parent (spool, 2026, 12) and the day folder itself.
    assert [kind for kind, _ in synced] == ["file", "dir", "dir", "dir", "dir"]


def test_files_are_flushed_through_a_writable_descriptor(
    tmp_path: Path, synced: list[tuple[str, int]]
):
    # Windows' FlushFileBuffers fails on a handle opened read-only.
    spool = Spool(tmp_path)
    spool.prepare()
    spool.commit(spool.write_temp(PART10), RECEIVED)
    path = tmp_path / "any.bin"
    path.write_bytes(PART10)
    sync_file(path)
    write_durably(tmp_path / "durable.bin", PART10)
    files = [mode for kind, mode in synced if kind == "file"]
    assert len(files) == 3 and os.O_RDONLY not in files
    assert (tmp_path / "durable.bin").read_bytes() == PART10


def test_fsync_dir_is_a_no_op_where_directories_cannot_be_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: list[tuple[str, int]]
):
    monkeypatch.setattr(drivers.files, "DIRECTORY_FSYNC", False)
    fsync_dir(tmp_path / "not even there")
    assert synced == []
    monkeypatch.setattr(drivers.files, "DIRECTORY_FSYNC", True)
    with pytest.raises(FileNotFoundError):  # on POSIX a missing folder is an error, not ignored
        fsync_dir(tmp_path / "not even there")


def test_a_quarantine_on_another_volume_gets_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # MoveFileExW without MOVEFILE_COPY_ALLOWED fails across volumes with ERROR_NOT_SAME_DEVICE,
    # which OSError maps to EXDEV, as rename(2) answers across filesystems.
    def other_volume(source: Path, target: Path, *, replace: bool = False) -> None:
        raise OSError(errno.EXDEV, "not the same device", str(source))

    spool = Spool(tmp_path)
    spool.prepare()
    temp = spool.write_temp(PART10)
    monkeypatch.setattr(drivers.dicom.store, "rename_durably", other_volume)
    kept = spool.quarantine(temp, RECEIVED)
    assert kept.read_bytes() == PART10 and not temp.exists()
