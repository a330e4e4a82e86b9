"""Durable files: atomic writes, fsynced directories, moves that never overwrite (blocking)."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.events import utcnow

# Windows' os.open is in text mode unless told otherwise: os.write would turn LF into CRLF.
BINARY = getattr(os, "O_BINARY", 0)
NO_INHERIT = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
# POSIX makes a rename or creation durable only once its directory is fsynced; Windows cannot
# open a directory as a file: there NTFS journals its metadata, and renames ask for
# MoveFileExW's MOVEFILE_WRITE_THROUGH (rename_durably).
DIRECTORY_FSYNC = os.name == "posix"
_MOVEFILE_REPLACE_EXISTING = 0x1
_MOVEFILE_WRITE_THROUGH = 0x8
# The data and the size must be durable; the timestamps need not be (Windows has only fsync).
_sync_data = getattr(os, "fdatasync", os.fsync)


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and fsync the file and its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    rename_durably(temporary, path, replace=True)


def rename_durably(source: Path, target: Path, *, replace: bool = False) -> None:
    """Rename `source` to `target` on the same volume and return once the new name is on disk;
    OSError (EXDEV: another volume). An existing `target` is replaced on POSIX, and on Windows
    only if `replace`."""
    if sys.platform == "win32":
        import ctypes

        flags = _MOVEFILE_WRITE_THROUGH | (_MOVEFILE_REPLACE_EXISTING if replace else 0)
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        if not kernel32.MoveFileExW(str(source), str(target), flags):
            error = ctypes.get_last_error()  # mapped to errno by OSError: 17 is EXDEV
            raise OSError(None, ctypes.FormatError(error), str(source), error, str(target))
        return
    os.replace(source, target)
    fsync_dir(target.parent)


def fsync_dir(path: Path) -> None:
    """Make renames and creations in `path` durable (POSIX; a no-op on Windows, see above)."""
    if not DIRECTORY_FSYNC:
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NO_INHERIT)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    """Make the data and size of the closed file `path` durable."""
    # Writable: Windows flushes (FlushFileBuffers) only a handle opened for writing.
    fd = os.open(path, os.O_RDWR | BINARY | NO_INHERIT)
    try:
        _sync_data(fd)
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    """Space left for unprivileged writers on the filesystem of `path` (POSIX and Windows)."""
    return shutil.disk_usage(path).free


def move_durably(files: Sequence[Path], directory: Path, tag: str = "") -> list[Path]:
    """Move `files` (one folder, all named `<stem of the first><tail>`) into `directory`, under
    `<stem>-<UTC stamp><tag>` if any name is taken there; fsync both folders; the new paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = files[0].stem
    tails = [path.name[len(stem) :] for path in files]
    if any((directory / path.name).exists() for path in files):
        stem = f"{stem}-{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}{tag}"
    targets = [directory / f"{stem}{tail}" for tail in tails]
    for path, target in zip(files, targets, strict=True):
        try:
            os.rename(path, target)
        except OSError as err:
            if err.errno != errno.EXDEV:
                # Not shutil.move's copy-then-delete: on Windows a file its writer still holds
                # is refused (PermissionError) and would be copied again on every retry.
                raise
            shutil.move(path, target)  # another volume: copy, then delete
    fsync_dir(directory)
    fsync_dir(files[0].parent)
    return targets
