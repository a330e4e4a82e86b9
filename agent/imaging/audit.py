"""Spool audit: indexed files missing or changed, spool files nothing refers to (blocking)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import JournalError
from agent.vocabulary.spool import SpoolLayout

# The SOP Instance UID of a spool file; None when it is not a complete dataset (OSError as is).
SopUidReader = Callable[[Path], str | None]

# Messages that may still read their file: a dead letter can be retried.
UNSETTLED = ("pending", "inflight", "dead")


@dataclass(frozen=True, slots=True)
class Indexed:
    """An instance of the study index and the file it points at."""

    sop_uid: str
    study_uid: str
    path: str
    size: int  # as indexed


@dataclass(slots=True)
class SpoolAudit:
    """What `audit_spool` found; paths are absolute."""

    files: int = 0  # in the dated folders
    megabytes: float = 0.0
    missing: list[Indexed] = field(default_factory=list)  # indexed, the file is gone
    changed: list[Indexed] = field(default_factory=list)  # indexed, the size differs
    copies: list[str] = field(default_factory=list)  # unreferenced; its SOP UID has another file
    unindexed: list[str] = field(default_factory=list)  # unreferenced; its SOP UID is not indexed
    unreadable: list[str] = field(default_factory=list)  # unreferenced, not a complete dataset
    recent: int = 0  # unreferenced but younger than `min_age`: its event may be committing now
    reserved: int = 0  # empty: created ahead for the images to come (docs/dicom.md)
    temporary: int = 0  # in spool/tmp: being received, or a stopped run's (deleted at start)
    quarantined: int = 0

    @property
    def healthy(self) -> bool:
        """Nothing indexed is lost or changed and no received image is outside the index."""
        return not (self.missing or self.changed or self.unindexed or self.unreadable)


def audit_spool(
    state_dir: Path, *, read_sop_uid: SopUidReader, min_age: float = 3600.0
) -> SpoolAudit:
    """Compare the spool of `state_dir` with its journal's index and unsettled messages."""
    spool = SpoolLayout.of(state_dir)
    database = state_dir / "journal.db"
    if not database.exists():
        raise JournalError(f"{database}: no journal here (has the agent run with this config?)")
    result = SpoolAudit(
        temporary=_count(spool.tmp),
        quarantined=_count(spool.quarantine_dir),
    )
    # Listed before the index is read: a file committed meanwhile is then found referenced.
    on_disk = dict(_dated_files(spool.root))
    oldest_unjudged = time.time() - min_age
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            conn.execute("PRAGMA busy_timeout=10000")
            indexed = _indexed(conn, spool.root)
            # A purged image's file left behind by a stop between the purge and the deletion.
            purged = {sop for (sop,) in conn.execute(_PURGED_SOPS)}
            referenced = {row.path for row in indexed} | _unsettled_paths(conn, spool.root)
    except sqlite3.Error as err:
        raise JournalError(f"{database}: {err}") from err
    result.files = len(on_disk)
    result.megabytes = sum(on_disk.values()) / 1e6
    sop_uids = {row.sop_uid for row in indexed}
    for row in indexed:
        size = on_disk.get(row.path)
        if size is None:  # outside the dated folders, or renamed in after the listing
            stat = _stat(row.path)
            size = None if stat is None else stat.st_size
        if size is None:
            result.missing.append(row)
        elif size != row.size:
            result.changed.append(row)
    for path in sorted(set(on_disk) - referenced):
        stat = _stat(path)
        if stat is None:  # deleted since the listing
            continue
        if stat.st_size == 0:
            result.reserved += 1
            continue
        if stat.st_mtime > oldest_unjudged:
            result.recent += 1
            continue
        try:
            sop_uid = read_sop_uid(Path(path))
        except OSError:
            sop_uid = None
        if sop_uid is None:
            result.unreadable.append(path)
            continue
        known = sop_uid in sop_uids or sop_uid in purged
        (result.copies if known else result.unindexed).append(path)
    return result


def delete_copies(audit: SpoolAudit) -> int:
    """Delete the unreferenced copies of indexed instances; return how many were deleted."""
    deleted = 0
    for path in audit.copies:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        deleted += 1
    return deleted


_PURGED_SOPS = "SELECT sop_uid FROM im_instances WHERE purged_at IS NOT NULL"


def _indexed(conn: sqlite3.Connection, root: Path) -> list[Indexed]:
    return [
        Indexed(sop_uid, study_uid, os.path.abspath(root / path), size)
        for sop_uid, study_uid, path, size in conn.execute(
            # A purged image's file is gone by policy, not missing.
            "SELECT sop_uid, study_uid, path, size FROM im_instances WHERE purged_at IS NULL"
        )
    ]


def _unsettled_paths(conn: sqlite3.Connection, root: Path) -> set[str]:
    """Files that queued images not yet delivered will read (the index may point elsewhere now)."""
    marks = ", ".join("?" * len(UNSETTLED))
    return {
        os.path.abspath(root / path)
        for (path,) in conn.execute(
            "SELECT COALESCE(json_extract(payload, '$.spool_path'),"
            " json_extract(payload, '$.path')) FROM outbox"
            f" WHERE kind = 'dicom.instance' AND state IN ({marks})",
            UNSETTLED,
        )
        if path
    }


def _dated_files(root: Path) -> Iterator[tuple[str, int]]:
    """(path, size) of every file in `root`'s dated folders (Y/M/D), never `tmp/`."""
    if not root.is_dir():
        return
    for year in sorted(root.iterdir()):
        if not (year.is_dir() and year.name.isdigit()):
            continue
        for folder, _, names in os.walk(year):
            for name in names:
                path = os.path.abspath(os.path.join(folder, name))
                stat = _stat(path)
                if stat is not None:
                    yield path, stat.st_size


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _count(directory: Path) -> int:
    return sum(1 for entry in directory.iterdir() if entry.is_file()) if directory.is_dir() else 0
