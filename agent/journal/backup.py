"""Back up a state directory while the agent runs, and restore it into a fresh one.

A backup is a folder: `journal.db` (SQLite's online backup: one consistent snapshot), the files
the journal refers to (`spool/`, `exam-files/`, `photos/`), and `MANIFEST.json`. The journal is
copied first: files are only ever added to those folders, fsynced before their event commits, so
every file the snapshot refers to is already on disk when the folders are copied after it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

from agent import __version__
from agent.errors import JournalError
from agent.journal.database import backup, latest_version

FOLDERS = ("spool", "exam-files", "photos")  # what the journal refers to, by path
SKIPPED = frozenset({"tmp"})  # spool/tmp: files not yet committed (a write under way)
MANIFEST = "MANIFEST.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds: when, from which agent and schema, how many files and bytes."""

    format: int
    created_at: float
    agent_version: str
    schema_version: int
    journal_pages: int
    files: int
    bytes: int


def backup_state(state_dir: Path, destination: Path) -> Manifest:
    """Write a backup of `state_dir` (the agent may be running on it) to the new folder
    `destination`; JournalError if it exists or the snapshot fails its check."""
    if destination.exists():
        raise JournalError(f"{destination} exists: choose a new folder")
    partial = destination.with_name(destination.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    pages = backup(state_dir / "journal.db", partial / "journal.db")
    files = size = 0
    for name in FOLDERS:
        copied, copied_bytes = _copy_tree(state_dir / name, partial / name)
        files, size = files + copied, size + copied_bytes
    with closing(sqlite3.connect(partial / "journal.db")) as conn:
        schema: int = conn.execute("PRAGMA user_version").fetchone()[0]
    manifest = Manifest(FORMAT, time.time(), __version__, schema, pages, files, size)
    _write(partial / MANIFEST, json.dumps(asdict(manifest), indent=2) + "\n")
    os.replace(partial, destination)  # a folder without .partial is a complete backup
    return manifest


def restore_state(source: Path, state_dir: Path) -> Manifest:
    """Restore the backup folder `source` into `state_dir`, which must not exist or be empty;
    JournalError if the backup is incomplete, damaged or from a newer agent."""
    manifest = read_manifest(source)
    if manifest.schema_version > latest_version():
        raise JournalError(
            f"{source}: the backup's schema v{manifest.schema_version} is newer than this agent"
            f" (v{latest_version()}): restore it with the agent that made it"
        )
    if state_dir.exists() and any(state_dir.iterdir()):
        raise JournalError(f"{state_dir} is not empty: restore into a new folder")
    with closing(sqlite3.connect(f"file:{source / 'journal.db'}?mode=ro", uri=True)) as conn:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise JournalError(f"{source}/journal.db failed its integrity check: {check}")
    partial = state_dir.with_name(state_dir.name + ".restoring")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shutil.copy2(source / "journal.db", partial / "journal.db")
    _fsync(partial / "journal.db")
    for name in FOLDERS:
        _copy_tree(source / name, partial / name)
    if state_dir.exists():
        state_dir.rmdir()
    os.replace(partial, state_dir)
    return manifest


def read_manifest(source: Path) -> Manifest:
    """The manifest of the backup folder `source`; JournalError if it is not a whole backup."""
    try:
        found = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
        manifest = Manifest(**found)
    except (OSError, ValueError, TypeError) as err:
        raise JournalError(f"{source}: not a complete backup ({MANIFEST} unreadable)") from err
    if manifest.format != FORMAT or not (source / "journal.db").is_file():
        raise JournalError(f"{source}: not a backup this agent can restore")
    return manifest


def _copy_tree(source: Path, target: Path) -> tuple[int, int]:
    """Copy every file below `source` (not spool/tmp) to `target`, fsynced; (files, bytes)."""
    files = size = 0
    if not source.is_dir():
        return files, size
    for folder, subfolders, names in os.walk(source):
        subfolders[:] = sorted(
            d for d in subfolders if not (folder == str(source) and d in SKIPPED)
        )
        into = target / Path(folder).relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in names:
            try:
                shutil.copy2(Path(folder) / name, into / name)
            except FileNotFoundError:
                continue  # removed since the listing (an unreferenced copy deleted meanwhile)
            _fsync(into / name)
            files += 1
            size += (into / name).stat().st_size
    return files, size


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
