"""Spool files created ahead, in folders already fsynced: receiving into one needs no rename
and no folder flush, so an image is durable after one fdatasync of its own (blocking)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agent.events import uuid7
from agent.vocabulary.kill_points import kill_point
from drivers.files import BINARY, NO_INHERIT, fsync_dir

log = structlog.get_logger(__name__)

BATCH = 16  # files created per folder flush
LOW = 8  # below this many ready files a background refill starts
# Reserved files of this process not yet sealed or given back: the start-up scan of another
# source on the same spool must not take them for a crashed run's leftovers.
LIVE: set[str] = set()
_live_lock = threading.Lock()


def durable_mkdir(folder: Path, root: Path) -> None:
    """Create `folder` below `root`, fsyncing each parent whose entry was added."""
    if folder.is_dir():
        return
    missing = []
    current = folder
    while current != root and not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        # Another association may have just made it: fsync its parent all the same.
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def release(path: str) -> None:
    """`path` is sealed or deleted: no longer this process's reserved file."""
    with _live_lock:
        LIVE.discard(path)


class Reservoir:
    """Hands out empty files `<root>/Y/M/D/<UUIDv7>.dcm` whose creation is already durable."""

    def __init__(self, root: Path, batch: int = BATCH, low: int = LOW) -> None:
        self.root = root
        self.batch = batch
        self.low = low
        self._ready: list[Path] = []
        self._lock = threading.Lock()
        self._refilling = False
        self._refill_thread: threading.Thread | None = None
        self._closed = False
        self.created = 0
        self.folder_flushes = 0

    def take(self) -> Path:
        """A reserved file (created now, one folder flush, if none is ready); OSError."""
        with self._lock:
            path = self._ready.pop(0) if self._ready else None
            refill = not self._refilling and len(self._ready) < self.low and not self._closed
            if refill:
                self._refilling = True
        if refill:
            thread = threading.Thread(target=self._refill, name="spool-reservoir", daemon=True)
            self._refill_thread = thread
            thread.start()
        return path if path is not None else self._create(1)[0]

    def close(self) -> int:
        """Delete the files never handed out (after a refill under way); return how many."""
        with self._lock:
            self._closed = True
            thread = self._refill_thread
        if thread is not None:
            thread.join()
        with self._lock:
            unused, self._ready = self._ready, []
        for path in unused:
            path.unlink(missing_ok=True)
            release(str(path))
        return len(unused)

    def _refill(self) -> None:
        try:
            created = self._create(self.batch)
        except OSError as err:  # the next `take` creates its own file and raises if it can't
            log.warning("dicom.reserve_failed", error=err.strerror or str(err))
            created = []
        with self._lock:
            self._refilling = False
            self._ready.extend(created)  # closed meanwhile: `close` deletes them

    def _create(self, count: int) -> list[Path]:
        now = datetime.now(UTC)
        folder = self.root / f"{now:%Y}" / f"{now:%m}" / f"{now:%d}"
        durable_mkdir(folder, self.root)
        paths = []
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY | NO_INHERIT
        for _ in range(count):
            path = folder / f"{uuid7()}.dcm"
            with _live_lock:
                LIVE.add(str(path))
            os.close(os.open(path, flags, 0o600))
            paths.append(path)
        kill_point("dicom.reserved")  # created, their names not yet durable
        fsync_dir(folder)
        with self._lock:
            self.created += count
            self.folder_flushes += 1
        return paths
