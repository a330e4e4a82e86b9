"""The spool on disk: receive into `spool/tmp`, fsync, rename into `spool/Y/M/D`, or quarantine."""

from __future__ import annotations

import errno
import os
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from agent.vocabulary.kill_points import kill_point
from agent.vocabulary.spool import SpoolLayout
from drivers.dicom.reservoir import Reservoir, durable_mkdir, release
from drivers.dicom.seal import SEAL_SIZE, seal_value
from drivers.files import BINARY, NO_INHERIT, free_bytes, fsync_dir, rename_durably, sync_file

TMP_SUFFIX = ".part"
# This process's temporary files start with it. Start-up deletes only other processes' files,
# which were never acknowledged; a second source (or a restarted one) may still be receiving
# into this process's.
RUN = uuid.uuid4().hex[:8]
RESERVE_CHECK_BYTES = 1024 * 1024  # a receiving file looks at the free space once per MiB


class SpoolFile:
    """A write-only temporary file for pynetdicom's chunked receive that never raises on write.

    pynetdicom writes each P-DATA fragment from its DUL thread, where an exception would abort the
    association; a failed write (disk full, or the reserve reached) is remembered instead and
    answered by the handler. The data set keeps arriving; it is no longer written.
    """

    def __init__(
        self,
        directory: Path,
        below_reserve: Callable[[], bool] = lambda: False,
        *,
        name: Path | None = None,
    ) -> None:
        self.name = str(name or directory / f"{RUN}-{uuid.uuid4().hex}{TMP_SUFFIX}")
        self.error: OSError | None = None
        self.size = 0
        self.below_reserve = below_reserve
        self._next_check = 0
        flags = os.O_WRONLY | BINARY | NO_INHERIT
        flags |= os.O_TRUNC if name is not None else os.O_CREAT | os.O_EXCL
        self._fd = os.open(self.name, flags, 0o600)
        self.file = self  # pynetdicom calls `.file.flush()` after each fragment

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data`; after a failure, discard it (the handler reports the first error)."""
        if self.error is not None or self._fd < 0:
            return 0
        if self.size >= self._next_check:
            self._next_check = self.size + RESERVE_CHECK_BYTES
            try:
                low = self.below_reserve()
            except OSError as err:  # the free space cannot even be read: stop as for a full disk
                self.error = err
                low = True
            if low:
                # Without this a single large data set could fill the disk before its end.
                self.error = self.error or OSError(errno.ENOSPC, "the disk reserve is reached")
                self.discard()  # give the space back now, not when the peer is done sending
                return len(data)
        view = memoryview(data)
        self._written(view)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self.size += written
        except OSError as err:
            self.error = err
        return len(data)

    def _written(self, data: memoryview) -> None:
        """Called with each piece of data before it is written."""

    def flush(self) -> None:
        """Nothing to flush: every write already reached the kernel."""

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close and delete the file."""
        self.close()
        Path(self.name).unlink(missing_ok=True)


class SealedFile(SpoolFile):
    """A reserved spool file received into in place: the File Meta (ending with the zeroed seal,
    `seal.meta_elements`), then the data set; `seal` makes it complete and durable in one flush."""

    def __init__(self, path: Path, meta: bytes, below_reserve: Callable[[], bool]) -> None:
        super().__init__(path.parent, below_reserve, name=path)
        self.path = path
        self._crc = 0
        self._seal_at = len(meta) - SEAL_SIZE
        self.write(meta)

    def _written(self, data: memoryview) -> None:
        if self.size == 0:  # the File Meta: every byte but the seal's own
            self._crc = zlib.crc32(data[: self._seal_at])
            self._crc = zlib.crc32(data[self._seal_at + SEAL_SIZE :], self._crc)
        else:
            self._crc = zlib.crc32(data, self._crc)

    def seal(self, received: datetime, calling_ae: str) -> None:
        """Write the seal over its zeros and fdatasync the file: then it is durable; OSError."""
        value = seal_value(self.size, self._crc, received, calling_ae)
        os.lseek(self._fd, self._seal_at, os.SEEK_SET)  # not pwrite: Windows has none
        if os.write(self._fd, value) != len(value):
            raise OSError(errno.EIO, "short write of the seal")
        kill_point("dicom.sealed")  # sealed in the page cache, not yet on disk
        _sync_data(self._fd)
        self.close()
        release(self.name)

    def discard(self) -> None:
        """Close and delete the file (an unsealed file is never acknowledged)."""
        super().discard()
        release(self.name)


_sync_data = getattr(os, "fdatasync", os.fsync)


class Spool:
    """`<state_dir>/spool` (dated folders, `tmp/`) and `<state_dir>/quarantine/dicom`."""

    def __init__(self, state_dir: Path, reserve_mb: float = 0.0) -> None:
        layout = SpoolLayout.of(state_dir)
        self.root, self.tmp, self.quarantine_dir = layout.root, layout.tmp, layout.quarantine_dir
        self.reserve_mb = reserve_mb  # receiving files stop below this much free space
        self.reservoir = Reservoir(self.root)

    def sealed_file(self, meta: bytes) -> SealedFile:
        """A reserved file in its dated folder with `meta` written; OSError."""
        path = self.reservoir.take()
        try:
            return SealedFile(path, meta, self.below_reserve)
        except OSError:
            path.unlink(missing_ok=True)
            release(str(path))
            raise

    def prepare(self) -> int:
        """Create the folders; delete earlier processes' leftovers in `tmp/`; return how many."""
        for directory in (self.tmp, self.quarantine_dir):
            directory.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.tmp.iterdir():
            if leftover.is_file() and not leftover.name.startswith(f"{RUN}-"):
                leftover.unlink(missing_ok=True)
                removed += 1
        return removed

    def new_file(self) -> SpoolFile:
        """A fresh temporary file in `tmp/` that stops writing below the reserve."""
        return SpoolFile(self.tmp, self.below_reserve)

    def below_reserve(self) -> bool:
        """True when the free space is below `reserve_mb` (never with a reserve of 0)."""
        return self.reserve_mb > 0 and self.free_mb() < self.reserve_mb

    def write_temp(self, data: bytes) -> Path:
        """Write `data` to a fresh temporary file (not yet fsynced); OSError on failure."""
        spool_file = self.new_file()
        try:
            spool_file.write(data)
        finally:
            spool_file.close()
        if spool_file.error is not None:
            spool_file.discard()
            raise spool_file.error
        return Path(spool_file.name)

    def free_mb(self) -> float:
        """Space left for unprivileged writers on the spool's filesystem, in MiB."""
        return free_bytes(self.root) / (1024 * 1024)

    def commit(self, temp: Path, received: datetime) -> Path:
        """Fsync `temp`, rename it durably to `Y/M/D/<uuid>.dcm` (UTC date); return the path."""
        sync_file(temp)
        folder = self.root / f"{received:%Y}" / f"{received:%m}" / f"{received:%d}"
        durable_mkdir(folder, self.root)
        target = folder / f"{uuid.uuid4()}.dcm"
        rename_durably(temp, target)
        return target

    def quarantine(self, temp: Path, received: datetime) -> Path:
        """Keep the bytes of a refused dataset as `quarantine/dicom/<UTC>-<short>.dcm`."""
        sync_file(temp)
        target = self.quarantine_dir / f"{received:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.dcm"
        try:
            rename_durably(temp, target)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            target.write_bytes(temp.read_bytes())  # a separately mounted quarantine: copy
            sync_file(target)
            temp.unlink()
            fsync_dir(self.quarantine_dir)
        return target
