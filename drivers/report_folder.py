"""A watched folder of report PDFs, for systems that can only export files: `<exam|lab>_<number>
.pdf` (the pattern is configurable) is stored durably with the report files the local API takes,
then journaled as that exam's or lab report's file, then moved to processed/."""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
from pydantic import Field, field_validator

from agent.config import ConfigPath, PluginSection, Seconds
from agent.events import Event, utcnow
from drivers.base import Driver, DriverContext
from drivers.files import move_durably, write_durably

log = structlog.get_logger(__name__)
EXAM_FILES = "imaging.exam_files"  # the imaging domain's event: a report file of an exam
LAB_FILES = "lab.files"  # the lab domain's: a PDF of a lab report
FILES_DIR = "exam-files"  # under the state directory, where the local API stores them too
NUMBER = re.compile(r"[^\x00-\x1f\x7f/\\]{1,32}")


class ReportFolderConfig(PluginSection):
    """[sources.<name>] type = "report_folder" """

    path: ConfigPath
    # A regular expression over the file name with the groups `kind` (exam or lab) and `number`
    # (the exam number or the lab report number).
    pattern: str = r"(?P<kind>exam|lab)_(?P<number>[^.]+)\.pdf"
    settle: Annotated[float, Field(ge=0)] = 2.0  # size and mtime unchanged this long: complete
    scan_interval: Seconds = 5.0
    max_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 32 * 1024 * 1024
    processed_dir: ConfigPath | None = None  # default: <path>/processed
    rejected_dir: ConfigPath | None = None  # default: <path>/rejected

    @field_validator("pattern")
    @classmethod
    def _groups(cls, value: str) -> str:
        try:
            groups = set(re.compile(value).groupindex)
        except re.error as err:
            raise ValueError(f"not a regular expression: {err}") from None
        if not {"kind", "number"} <= groups:
            raise ValueError("needs the named groups (?P<kind>…) and (?P<number>…)")
        return value


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int


class ReportFolder(Driver):
    """Polls the folder; each complete file is taken (or moved to rejected/ with a reason)."""

    def __init__(self, name: str, config: ReportFolderConfig) -> None:
        super().__init__(name)
        self.config = config
        self.pattern = re.compile(config.pattern)
        self.processed_dir = config.processed_dir or config.path / "processed"
        self.rejected_dir = config.rejected_dir or config.path / "rejected"
        self.counters: dict[str, int] = {}
        self._seen: dict[Path, tuple[_Seen, float]] = {}

    def stats(self) -> dict[str, int]:
        """Files taken and rejected, by reason."""
        return dict(self.counters)

    async def run(self, ctx: DriverContext) -> None:
        """Scan until cancelled; a missing folder is logged once and looked at again."""
        missing = False
        while True:
            try:
                listing = await asyncio.to_thread(self._listing)
            except OSError as err:
                if not missing:
                    log.warning("report_folder.unavailable", source=self.name, error=str(err))
                missing = True
                listing = []
            else:
                if missing:
                    log.info("report_folder.available", source=self.name)
                missing = False
            for path, seen in listing:
                await self._consider(ctx, path, seen)
            await asyncio.sleep(self.config.scan_interval)

    def _listing(self) -> list[tuple[Path, _Seen]]:
        found = []
        for path in sorted(self.config.path.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                st = path.stat()
                found.append((path, _Seen(st.st_size, st.st_mtime_ns)))
        return found

    async def _consider(self, ctx: DriverContext, path: Path, seen: _Seen) -> None:
        now = asyncio.get_running_loop().time()
        before = self._seen.get(path)
        if before is None or before[0] != seen:
            self._seen[path] = (seen, now)
            if self.config.settle > 0:
                return  # looked at again at the next scan
        elif now - before[1] < self.config.settle:
            return
        self._seen.pop(path, None)
        await self._take(ctx, path, seen)

    async def _take(self, ctx: DriverContext, path: Path, seen: _Seen) -> None:
        matched = self.pattern.fullmatch(path.name)
        if matched is None or matched["kind"] not in ("exam", "lab"):
            await self._reject(path, "name", f"the name does not match {self.config.pattern}")
            return
        number = matched["number"]
        if not NUMBER.fullmatch(number) or number.strip() != number:
            await self._reject(path, "number", "the number: 1-32 characters, no control ones")
            return
        if seen.size > self.config.max_bytes:
            await self._reject(path, "oversize", f"over max_bytes ({self.config.max_bytes})")
            return
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return
        if not data.startswith(b"%PDF-"):
            await self._reject(path, "not_pdf", "not a PDF file")
            return
        name = f"{hashlib.sha256(data).hexdigest()}.pdf"
        target = ctx.state_dir / FILES_DIR / name
        await asyncio.to_thread(_store, target, data)
        entry = {"name": name, "size": len(data)}
        if matched["kind"] == "exam":
            event = Event(EXAM_FILES, self.name, {"exam_no": number, "files": [
                {**entry, "kind": "report_pdf"}]})  # fmt: skip
        else:
            event = Event(LAB_FILES, self.name, {"report_no": number, "files": [entry]})
        await ctx.emit(event)
        await asyncio.to_thread(move_durably, [path], self.processed_dir, f"-{name[:8]}")
        self.counters["taken"] = self.counters.get("taken", 0) + 1
        log.info("report_folder.taken", source=self.name, kind=matched["kind"])

    async def _reject(self, path: Path, reason: str, text: str) -> None:
        try:
            moved = await asyncio.to_thread(move_durably, [path], self.rejected_dir, "")
        except FileNotFoundError:
            return
        note = f"{text}\nat: {utcnow().isoformat()}\n".encode()
        await asyncio.to_thread(write_durably, moved[0].with_name(moved[0].name + ".reason.txt"),
                                note)  # fmt: skip
        self.counters[reason] = self.counters.get(reason, 0) + 1  # counted once it is all done
        log.warning("report_folder.rejected", source=self.name, reason=reason)


def _store(target: Path, data: bytes) -> None:
    """Write the file durably once (content-addressed: an existing one is the same file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        write_durably(target, data)


def build(name: str, config: ReportFolderConfig) -> ReportFolder:
    """Make the driver from its validated config."""
    return ReportFolder(name, config)
