"""Where received images live under the state directory: written by DICOM sources, indexed and
audited by the imaging domain (the index stores paths relative to `root`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path, PurePath


@dataclass(frozen=True, slots=True)
class SpoolLayout:
    """`<state_dir>/spool` (dated folders Y/M/D, `tmp/`) and `<state_dir>/quarantine/dicom`."""

    root: Path
    tmp: Path
    quarantine_dir: Path

    @classmethod
    def of(cls, state_dir: Path) -> SpoolLayout:
        """The layout under `state_dir`."""
        root = state_dir / "spool"
        return cls(root, root / "tmp", state_dir / "quarantine" / "dicom")


def journal_spool_root(conn: sqlite3.Connection) -> Path | None:
    """The spool root beside the journal `conn` is open on (`<state_dir>/spool`); None in memory.
    The journal lives in the state directory, so the connection alone says where the spool is,
    wherever the state directory has been moved or restored to."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return SpoolLayout.of(Path(file).parent).root if file else None
    return None


def journal_state_dir(conn: sqlite3.Connection) -> Path | None:
    """The state directory the journal `conn` is open on lives in; None in memory. Files kept
    there by path (`exam-files/…`) are stored relative to it, as spool files are to the spool."""
    spool = journal_spool_root(conn)
    return None if spool is None else spool.parent


def stored_path(path: str, root: Path | None) -> str:
    """How the index keeps a spool file: relative to the spool root (POSIX separators) when it
    lies below it, so that a moved state directory still finds it; else as given."""
    if root is None:
        return path
    try:
        return PurePath(path).relative_to(root).as_posix()
    except ValueError:
        return path


def spool_file(stored: str, root: Path | None) -> str:
    """The file a stored path names now: below `root` if relative, else as stored."""
    if root is None or PurePath(stored).is_absolute():
        return stored
    return str(root / stored)
