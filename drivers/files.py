"""Durable files: atomic writes, fsynced directories, moves that never overwrite (blocking)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from agent.events import utcnow


def write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and fsync the file and its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make renames and creations in `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # Windows: directory entries are durable with the file
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        shutil.move(path, target)
    fsync_dir(directory)
    fsync_dir(files[0].parent)
    return targets
