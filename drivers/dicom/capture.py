"""A watched folder of JPEG + JSON sidecar pairs, each converted to DICOM into the spool."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from watchdog.observers.api import BaseObserver

from agent.events import Event, utcnow
from agent.vocabulary.study_index import IndexUnavailable, StudyIndex, StudyIndexFactory
from drivers.base import Driver, DriverContext
from drivers.dicom import convert
from drivers.dicom.capture_config import ImageCaptureConfig
from drivers.dicom.convert import Settings, StudyRef
from drivers.dicom.errors import CaptureError
from drivers.dicom.sidecar import Sidecar, parse_sidecar
from drivers.dicom.store import Spool
from drivers.dicom.tags import UnreadableDataset, read_identity
from drivers.files import fsync_dir, move_durably, write_durably
from drivers.transport import Backoff
from drivers.watch import start_observer, stop_watching

log = structlog.get_logger(__name__)

_NAMESPACE = uuid.UUID("0b7f4d52-3c1e-4f8a-9d6b-8e2a51c7f0a3")
_SIDECAR_MAX = 1024 * 1024


class _Transient(Exception):
    """The spool or the index cannot be used now; the pair is tried again later."""


class ImageCapture(Driver):
    """Converts each complete pair in the folder; bad pairs go to rejected/ with a reason."""

    def __init__(
        self, name: str, config: ImageCaptureConfig, study_index: StudyIndexFactory
    ) -> None:
        super().__init__(name)
        self.config = config
        self.study_index = study_index  # joins a capture to the indexed study of its accession
        self.folder = config.path
        self.processed_dir = config.processed_dir or config.path / "processed"
        self.rejected_dir = config.rejected_dir or config.path / "rejected"
        self.settings = Settings(
            config.uid_root,
            config.manufacturer,
            config.institution,
            config.station,
            config.burned_in_annotation,
        )
        self.tz = ZoneInfo(config.timezone)
        self.backoff = Backoff(config.retry_initial, config.retry_max)
        self.counters: Counter[str] = Counter()  # stored, duplicate and rejects by reason
        self.watching = False
        self._failures = 0
        self._first_seen: dict[str, float] = {}
        self._stats: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._due: asyncio.Queue[str] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._rng = random.Random()
        self._index: StudyIndex | None = None  # the journal's, read-only (from `run`)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, re-checked after every check."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def run(self, ctx: DriverContext) -> None:
        """Watch and convert until cancelled; a missing folder is retried, never raised."""
        spool = Spool(ctx.state_dir)
        self._index = self.study_index(ctx.state_dir / "journal.db")
        observer = await self._start_observer()
        try:
            await self._note()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._rescan())
                while True:
                    await self._check(ctx, spool, await self._due.get())
                    await self._note()
        finally:
            await stop_watching(observer, self._timers)
            self.watching = False

    async def _rescan(self) -> None:
        """List the folder now and every `rescan_interval`: what notifications missed."""
        while True:
            for path in await asyncio.to_thread(self._files):
                if path.stem not in self._timers:
                    self._touch(path, None)
            await asyncio.sleep(self.config.rescan_interval)

    async def _start_observer(self) -> BaseObserver:
        observer, failures = await start_observer(
            self.folder, self._touch, self.backoff, self._rng, self._unavailable
        )
        if failures:
            log.info("capture.folder_available", source=self.name)
        self.watching = True
        return observer

    async def _unavailable(self, failures: int, err: OSError) -> None:
        if failures == 1:
            log.warning("capture.folder_unavailable", source=self.name, error=str(err))

    def _files(self, stem: str | None = None) -> list[Path]:
        found = []
        for path in self.folder.iterdir():
            if not path.is_file() or any(fnmatch.fnmatch(path.name, p) for p in self.config.ignore):
                continue
            if path.name.endswith(".reason.txt") or (stem is not None and path.stem != stem):
                continue
            found.append(path)
        return sorted(found)

    def _touch(self, path: Path, delay: float | None) -> None:
        if path.parent != self.folder or any(
            fnmatch.fnmatch(path.name, p) for p in self.config.ignore
        ):
            return
        loop = asyncio.get_running_loop()
        self._first_seen.setdefault(path.stem, loop.time())
        self._schedule(path.stem, self.config.settle if delay is None else delay)

    def _schedule(self, stem: str, delay: float) -> None:
        if (timer := self._timers.pop(stem, None)) is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[stem] = loop.call_later(delay, self._due.put_nowait, stem)

    async def _check(self, ctx: DriverContext, spool: Spool, stem: str) -> None:
        self._timers.pop(stem, None)
        files = await asyncio.to_thread(self._files, stem)
        if not files:
            self._first_seen.pop(stem, None)
            self._stats.pop(stem, None)
            return
        stats = tuple((p.name, *_stat(p)) for p in files)
        if self._stats.get(stem) != stats:  # still being written: look again after `settle`
            self._stats[stem] = stats
            self._schedule(stem, self.config.settle)
            return
        sidecars = [p for p in files if p.suffix.lower() == ".json"]
        images = [p for p in files if p.suffix.lower() in self.config.image_suffixes]
        if len(sidecars) + len(images) < len(files) or len(images) > 1:
            odd = sorted({p.suffix.lower() for p in files if p not in sidecars})
            err = CaptureError("unsupported_file", f"only one JPEG and its .json: found {odd}")
            await self._reject(ctx, files, err)
        elif sidecars and images:
            await self._convert(ctx, spool, stem, images[0], sidecars[0])
            return
        else:
            waited = asyncio.get_running_loop().time() - self._first_seen[stem]
            if waited < self.config.pair_timeout:
                self._schedule(stem, self.config.pair_timeout - waited)
                return
            reason = "missing_sidecar" if images else "missing_image"
            await self._reject(ctx, files, CaptureError(reason, "its pair never arrived"))
        self._forget(stem)

    def _forget(self, stem: str) -> None:
        self._first_seen.pop(stem, None)
        self._stats.pop(stem, None)

    async def _convert(
        self, ctx: DriverContext, spool: Spool, stem: str, image: Path, sidecar: Path
    ) -> None:
        try:
            event, target = await asyncio.to_thread(self._write, spool, image, sidecar)
        except CaptureError as err:
            await self._reject(ctx, [image, sidecar], err)
        except (_Transient, OSError) as err:
            self._failures += 1
            if self._failures == 1:
                log.warning("capture.spool_unavailable", source=self.name, error=str(err))
            self._stats.pop(stem, None)
            self._schedule(stem, self.backoff.delay(self._failures, self._rng))
            return
        else:
            if self._failures:
                self._failures = 0
                log.info("capture.spool_available", source=self.name)
            if await ctx.emit(event):
                self.counters["stored"] += 1
            else:  # converted before a crash, journaled then: keep that file only
                self.counters["duplicate"] += 1
                await asyncio.to_thread(_remove, target)
            await asyncio.to_thread(move_durably, [image, sidecar], self.processed_dir)
        self._forget(stem)

    def _write(self, spool: Spool, image: Path, sidecar: Path) -> tuple[Event, Path]:
        """Convert the pair and commit the file to the spool (blocking); the event to emit."""
        size = image.stat().st_size
        if size > self.config.max_bytes:
            raise CaptureError("oversize", f"{size} bytes, max_bytes is {self.config.max_bytes}")
        if sidecar.stat().st_size > _SIDECAR_MAX:
            raise CaptureError("bad_sidecar", "larger than 1 MiB")
        jpeg, raw = image.read_bytes(), sidecar.read_bytes()
        fields = parse_sidecar(
            raw,
            encoding=self.config.sidecar_encoding,
            ignore_unknown=self.config.ignore_unknown_keys,
        )
        captured = datetime.fromtimestamp(image.stat().st_mtime, UTC)
        digest = hashlib.sha256(jpeg).hexdigest()
        ds = convert.build(
            jpeg,
            fields,
            image_sha256=digest,
            study=self._study(fields),
            captured_at=captured,
            tz=self.tz,
            settings=self.settings,
        )
        data = convert.encode(ds)
        spool.tmp.mkdir(parents=True, exist_ok=True)
        temp = spool.write_temp(data)
        try:
            identity = read_identity(temp)
            target = spool.commit(temp, utcnow())
        except UnreadableDataset as err:  # our own output: a bug, not the workstation's fault
            temp.unlink(missing_ok=True)
            raise CaptureError("conversion_failed", err.reason) from err
        payload = {"path": str(target), "size": len(data), **identity}
        payload |= {"calling_ae": "", "received_via": "capture"}
        key = f"dicom.stored|{self.name}|{digest}|{hashlib.sha256(raw).hexdigest()}"
        event_id = str(uuid.uuid5(_NAMESPACE, key))
        return Event("dicom.stored", self.name, payload, occurred_at=captured, id=event_id), target

    def _study(self, fields: Sidecar) -> StudyRef | None:
        """The indexed study of the sidecar's accession (first received wins), if any."""
        if fields.study_uid or not fields.accession or self._index is None:
            return None
        try:
            found = self._index.study_of_accession(fields.accession)
        except IndexUnavailable as err:
            raise _Transient(f"study index: {err}") from err
        return None if found is None else StudyRef(*found)

    async def _reject(self, ctx: DriverContext, files: list[Path], err: CaptureError) -> None:
        sizes = {p: _stat(p)[0] for p in files}
        digest = hashlib.sha256()
        for path in files:
            digest.update(await asyncio.to_thread(path.read_bytes))
        moved = await asyncio.to_thread(move_durably, files, self.rejected_dir)
        note = f"{err}\nat: {utcnow().isoformat()}\n"
        reason_file = moved[0].with_name(moved[0].stem + ".reason.txt")
        await asyncio.to_thread(write_durably, reason_file, note.encode("utf-8"))
        self.counters[err.reason] += 1
        image = next((m for m, p in zip(moved, files, strict=True) if p.suffix != ".json"), None)
        kept = image or moved[0]
        size = sizes[files[moved.index(kept)]]
        log.warning("capture.rejected", source=self.name, reason=err.reason, size=size)
        payload = {"reason": str(err), "quarantined": str(kept), "calling_ae": "", "size": size}
        key = str(uuid.uuid5(_NAMESPACE, f"dicom.rejected|{self.name}|{digest.hexdigest()}"))
        await ctx.emit(Event("dicom.rejected", self.name, payload, id=key))

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (-1, 0)
    return (st.st_size, st.st_mtime_ns)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def build(name: str, config: ImageCaptureConfig, study_index: StudyIndexFactory) -> ImageCapture:
    """Make the capture source from its validated config and the imaging domain's study index."""
    return ImageCapture(name, config, study_index)
