"""The start-up scan: every spool file the journal lacks is journaled, deleted (never
acknowledged) or quarantined, so that no file is left unknown (blocking, but `recover_spool`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agent.events import Event
from agent.vocabulary.study_index import SpoolIndex
from drivers.dicom.reservoir import LIVE
from drivers.dicom.seal import Sealed, read_seal
from drivers.dicom.store import Spool
from drivers.dicom.tags import UnreadableDataset, read_identity, read_sop_uid

log = structlog.get_logger(__name__)

MARK = ".scanned"  # in the spool root: when the last complete scan started (Unix seconds)
# Folders changed this long before the last scan started are looked at again (clock steps).
SLACK = 86_400.0
EMIT_AT_ONCE = 256  # events in flight: they share the journal's group commits


@dataclass(slots=True)
class Recovery:
    """What the scan found in the files without an index row."""

    journaled: int = 0  # complete (sealed, or written before seals): `dicom.stored` now
    deleted: int = 0  # never sealed: never acknowledged
    reserved: int = 0  # created ahead and never used (deleted too)
    quarantined: int = 0  # unreadable, or a seal its bytes do not match
    copies: int = 0  # its SOP instance is indexed with another file (`spool audit` lists it)
    events: list[Event] = field(default_factory=list)


def scan(spool: Spool, index: SpoolIndex, source: str, *, since: float | None) -> Recovery:
    """Judge the files of the dated folders changed since `since` (all: None) that no index
    row names; delete and quarantine here, return the events to journal."""
    found = Recovery()
    for folder in _folders(spool.root, None if since is None else since - SLACK):
        relative = folder.relative_to(spool.root).as_posix()
        known = index.indexed_files(relative)
        unknown = []
        for entry in os.scandir(folder):
            # Not LIVE: another source of this process is receiving into it.
            name = f"{relative}/{entry.name}"
            if entry.is_file() and name not in known and entry.path not in LIVE:
                unknown.append(Path(entry.path))
        complete: list[tuple[Path, dict[str, object], datetime, str]] = []
        for path in unknown:
            _judge(spool, path, source, found, complete)
        if not complete:
            continue
        indexed = index.indexed_instances([str(i["sop_instance_uid"]) for _, i, _, _ in complete])
        for path, identity, received, calling in complete:
            if identity["sop_instance_uid"] in indexed:
                found.copies += 1
                continue
            payload = {
                "path": str(path.absolute()),
                "size": path.stat().st_size,
                **identity,
                "calling_ae": calling,
                "received_via": "c-store",
            }
            found.events.append(
                Event("dicom.stored", source, payload, occurred_at=received, id=path.stem)
            )
    return found


def _judge(
    spool: Spool,
    path: Path,
    source: str,
    found: Recovery,
    complete: list[tuple[Path, dict[str, object], datetime, str]],
) -> None:
    try:
        state = read_seal(path)
    except FileNotFoundError:
        return
    if state in ("reserved", "unsealed"):
        path.unlink(missing_ok=True)
        if state == "reserved":
            found.reserved += 1
        else:
            found.deleted += 1
        return
    if isinstance(state, Sealed):
        received, calling = state.received, state.calling_ae
    else:
        received, calling = datetime.fromtimestamp(path.stat().st_mtime, UTC), ""
    reason = "torn" if state == "torn" else ""
    if not reason:
        try:
            identity = read_identity(path)
        except UnreadableDataset as err:
            reason = err.reason
        else:
            complete.append((path, dict(identity), received, calling))
            return
    size = path.stat().st_size
    kept = spool.quarantine(path, received)
    found.quarantined += 1
    payload = {"reason": reason, "quarantined": str(kept), "calling_ae": calling, "size": size}
    found.events.append(Event("dicom.rejected", source, payload, occurred_at=received))
    log.warning("dicom.spool_file_quarantined", source=source, reason=reason, file=kept.name)


def complete_sop_uid(path: Path) -> str | None:
    """The SOP Instance UID of a spool file that is complete (sealed and intact, or written
    before seals); None for one never finished or torn (`spool audit`: unreadable)."""
    if read_seal(path) in ("reserved", "unsealed", "torn"):
        return None
    return read_sop_uid(path)


def _folders(root: Path, changed_since: float | None) -> list[Path]:
    """The dated folders `Y/M/D` below `root`, those changed since `changed_since` if given."""
    folders = []
    for year in sorted(root.iterdir()) if root.is_dir() else ():
        if not (year.is_dir() and year.name.isdigit()):
            continue
        for month in sorted(year.iterdir()):
            for day in sorted(month.iterdir()) if month.is_dir() else ():
                if day.is_dir() and (changed_since is None or day.stat().st_mtime >= changed_since):
                    folders.append(day)
    return folders


async def recover_spool(
    spool: Spool,
    index: SpoolIndex,
    source: str,
    emit: Callable[[Event], Awaitable[bool]],
) -> Recovery:
    """Scan the spool (the folders changed since the last complete scan) and journal what it
    lacks; the scan's start is written down only once every event is committed."""
    started = time.time()
    mark = spool.root / MARK
    try:
        since: float | None = float(mark.read_text(encoding="ascii"))
    except (OSError, ValueError):
        since = None  # never scanned (or the mark is unreadable): every folder
    found = await asyncio.to_thread(scan, spool, index, source, since=since)
    events = found.events
    for start in range(0, len(events), EMIT_AT_ONCE):
        fresh = await asyncio.gather(*(emit(e) for e in events[start : start + EMIT_AT_ONCE]))
        chunk = events[start : start + EMIT_AT_ONCE]
        found.journaled += sum(
            1 for e, new in zip(chunk, fresh, strict=True) if new and e.kind == "dicom.stored"
        )
    await asyncio.to_thread(mark.write_text, repr(started), encoding="ascii")
    if found.journaled or found.deleted or found.quarantined or found.copies:
        log.warning(
            "dicom.spool_recovered",
            source=source,
            journaled=found.journaled,
            deleted=found.deleted,
            reserved=found.reserved,
            quarantined=found.quarantined,
            copies=found.copies,
        )
    return found
