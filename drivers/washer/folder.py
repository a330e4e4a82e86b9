"""A watched folder: one file per cycle, picked up once complete, then moved aside."""

from __future__ import annotations

import asyncio
import fnmatch
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
from pydantic import Field, model_validator
from watchdog.observers.api import BaseObserver

from agent.config import ConfigPath, Seconds
from agent.events import utcnow
from drivers.base import Driver, DriverContext
from drivers.files import move_durably, write_durably
from drivers.transport import Backoff
from drivers.washer.capture import Receipts, WasherSourceConfig, file_sha256, sha256
from drivers.washer.receipt import ReceiptError
from drivers.watch import start_observer, stop_watching

log = structlog.get_logger(__name__)

_IGNORE = [".*", "~*", "*~", "*.tmp", "*.temp", "*.part", "*.partial", "*.swp", "*.reason.txt"]


class WasherFolderConfig(WasherSourceConfig):
    """[sources.<name>] type = "washer_folder" """

    path: ConfigPath
    include: Annotated[list[str], Field(min_length=1)] = ["*"]
    ignore: list[str] = _IGNORE
    settle: Annotated[float, Field(ge=0)] = 2.0  # size and mtime unchanged this long: complete
    ready_suffix: str | None = None  # e.g. ".ok": `X.csv` is complete once `X.csv.ok` exists
    processed_dir: ConfigPath | None = None  # default: <path>/processed
    rejected_dir: ConfigPath | None = None  # default: <path>/rejected
    max_bytes: Annotated[int, Field(ge=256, le=64 * 1024 * 1024)] = 1024 * 1024
    retry_initial: Seconds = 1.0
    retry_max: Seconds = 60.0
    # Network shares (SMB, NFS) deliver no change notifications, and a busy folder can overflow
    # them: the folder is also listed this often, so no file is ever left unread.
    rescan_interval: Seconds = 30.0

    @model_validator(mode="after")
    def _consistent(self) -> WasherFolderConfig:
        if self.ready_suffix is not None and not self.ready_suffix.strip("."):
            raise ValueError("ready_suffix needs a name, e.g. '.ok'")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self


@dataclass(frozen=True, slots=True)
class _Stat:
    size: int
    mtime_ns: int
    ready: bool


class WasherFolder(Driver):
    """Reads cycle files a washer writes into a folder; each is emitted or moved to rejected/."""

    def __init__(self, name: str, config: WasherFolderConfig) -> None:
        super().__init__(name)
        self.config = config
        self.receipts = Receipts(name, config)
        self.folder = config.path
        self.processed_dir = config.processed_dir or config.path / "processed"
        self.rejected_dir = config.rejected_dir or config.path / "rejected"
        self.backoff = Backoff(config.retry_initial, config.retry_max)
        self.watching = False
        self.failures = 0  # failed attempts to watch the folder in a row
        self.checks: dict[str, int] = {}  # stability checks per file name, for status and tests
        self._seen: dict[Path, _Stat] = {}
        self._in_use: set[Path] = set()  # files whose writer still holds them (Windows)
        self._timers: dict[Path, asyncio.TimerHandle] = {}
        self._due: asyncio.Queue[Path] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._rng = random.Random()

    @property
    def counters(self) -> dict[str, int]:
        """Rejected files so far, by reason."""
        return dict(self.receipts.counters)

    def stats(self) -> dict[str, int]:
        """Rejected files by reason."""
        return dict(self.receipts.counters)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, re-checked after every check or move."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def run(self, ctx: DriverContext) -> None:
        """Watch and process until cancelled; a missing folder is retried, never raised."""
        observer = await self._start_observer()
        try:
            await self._note()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._rescan())
                while True:
                    await self._check(ctx, await self._due.get())
        finally:
            await stop_watching(observer, self._timers)
            self.watching = False

    async def _rescan(self) -> None:
        """List the folder now and every `rescan_interval`: what notifications missed."""
        failures = 0
        while True:
            try:
                listing = await asyncio.to_thread(self._listing)
            except OSError as err:  # the share went away: say so once, keep looking
                failures += 1
                await self._unavailable(failures, err)
                listing = []
            else:
                if failures:
                    log.info("washer.folder_available", source=self.name, path=str(self.folder))
                failures = self.failures = 0
            for path in listing:
                if path not in self._timers:
                    self._touch(path, None)
            await asyncio.sleep(self.config.rescan_interval)

    async def _start_observer(self) -> BaseObserver:
        observer, failures = await start_observer(
            self.folder, self._touch, self.backoff, self._rng, self._unavailable
        )
        if failures:
            self.failures = 0
            log.info("washer.folder_available", source=self.name, path=str(self.folder))
        self.watching = True
        return observer

    async def _unavailable(self, failures: int, err: OSError) -> None:
        self.failures = failures
        await self._note()
        emit = log.warning if failures == 1 else log.debug
        emit("washer.folder_unavailable", source=self.name, path=str(self.folder), error=str(err))

    def _listing(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def _touch(self, path: Path, delay: float | None) -> None:
        """A file changed (or is found): check it after `delay` (default: `settle`)."""
        if path.parent != self.folder:
            return
        suffix = self.config.ready_suffix
        if suffix is not None and path.name.endswith(suffix):
            path, delay = path.with_name(path.name[: -len(suffix)]), 0.0
        if not self._wanted(path.name):
            return
        if (timer := self._timers.pop(path, None)) is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        wait = self.config.settle if delay is None else delay
        self._timers[path] = loop.call_later(wait, self._due.put_nowait, path)

    def _wanted(self, name: str) -> bool:
        if any(fnmatch.fnmatch(name, pattern) for pattern in self.config.ignore):
            return False
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.config.include)

    def _stat(self, path: Path) -> _Stat | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        suffix = self.config.ready_suffix
        ready = suffix is not None and path.with_name(path.name + suffix).exists()
        return _Stat(st.st_size, st.st_mtime_ns, ready)

    async def _check(self, ctx: DriverContext, path: Path) -> None:
        self._timers.pop(path, None)
        stat = await asyncio.to_thread(self._stat, path)
        self.checks[path.name] = self.checks.get(path.name, 0) + 1
        previous = self._seen.pop(path, None)
        if stat is None:
            await self._note()
            return  # gone (moved away or deleted): nothing left to read
        complete = stat.ready if self.config.ready_suffix else stat == previous
        if not complete:
            if not self.config.ready_suffix:
                self._seen[path] = stat
                self._touch(path, None)
            await self._note()
            return
        await self._process(ctx, path, stat)
        await self._note()

    async def _process(self, ctx: DriverContext, path: Path, stat: _Stat) -> None:
        try:
            if stat.size > self.config.max_bytes:
                digest = await asyncio.to_thread(file_sha256, path)
                limit = self.config.max_bytes
                raise ReceiptError("oversize", f"{stat.size} bytes, max_bytes is {limit}")
            raw = await asyncio.to_thread(path.read_bytes)
            digest = sha256(raw)
            event = await asyncio.to_thread(self.receipts.cycle_event, raw)
        except FileNotFoundError:
            return  # taken away between the check and the read
        except PermissionError as err:
            self._held(path, err)
            return
        except ReceiptError as err:
            try:
                moved = await asyncio.to_thread(self._reject, path, err, digest)
            except PermissionError as held:
                self._held(path, held)
                return
            await ctx.emit(self.receipts.rejected_event(err, moved, digest, stat.size))
            return
        await ctx.emit(event)
        try:
            await asyncio.to_thread(self._move, path, self.processed_dir, digest)
        except PermissionError as err:
            # Read again once free: the same receipt makes the same event id, journaled once.
            self._held(path, err)
            return
        self._in_use.discard(path)

    def _held(self, path: Path, err: PermissionError) -> None:
        """Look at `path` again after `settle`: on Windows its writer may still hold it open
        without sharing, so it cannot be read or moved yet. One warning per file."""
        emit = log.debug if path in self._in_use else log.warning
        self._in_use.add(path)
        emit("washer.file_in_use", source=self.name, file=path.name, error=err.strerror or str(err))
        self._touch(path, None)

    def _move(self, path: Path, directory: Path, digest: str) -> Path:
        """Move `path` (and its ready marker) into `directory` durably; never overwrite."""
        files = [path]
        if self.config.ready_suffix is not None:
            marker = path.with_name(path.name + self.config.ready_suffix)
            if marker.exists():
                files.append(marker)
        return move_durably(files, directory, f"-{digest[:8]}")[0]

    def _reject(self, path: Path, error: ReceiptError, digest: str) -> Path:
        target = self._move(path, self.rejected_dir, digest)
        note = f"{error}\nformat: {self.config.format}\nat: {utcnow().isoformat()}\n"
        write_durably(target.with_name(target.name + ".reason.txt"), note.encode("utf-8"))
        return target

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def build(name: str, config: WasherFolderConfig) -> WasherFolder:
    """Make the folder source from its validated config."""
    return WasherFolder(name, config)
