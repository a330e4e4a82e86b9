"""The study index's instances as platforms serving image links read them (pure SQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent.vocabulary.images import ImageQueries, InstanceFile
from agent.vocabulary.spool import journal_spool_root, spool_file

_COLUMNS = (
    "i.study_uid, i.series_uid, i.sop_uid, i.transfer_syntax, i.path, i.size,"
    " i.purged_at IS NOT NULL"
)


def instance_file(conn: sqlite3.Connection, sop_uid: str) -> InstanceFile | None:
    """The indexed instance with this SOP Instance UID, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM im_instances i WHERE i.sop_uid = ?", (sop_uid,)
    ).fetchone()
    return None if row is None else _file(row, journal_spool_root(conn))


def study_files(conn: sqlite3.Connection, study_uid: str) -> list[InstanceFile]:
    """A study's instances in the order they are forwarded: series number, instance number."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM im_instances i"
        " LEFT JOIN im_series s ON s.series_uid = i.series_uid WHERE i.study_uid = ?"
        " ORDER BY s.number IS NULL, s.number, i.series_uid, i.number IS NULL, i.number, i.sop_uid",
        (study_uid,),
    )
    root = journal_spool_root(conn)
    return [_file(row, root) for row in rows]


def _file(row: tuple[Any, ...], root: Path | None) -> InstanceFile:
    """The row's instance with its path as the file is found now (the index keeps it relative)."""
    study_uid, series_uid, sop_uid, syntax, path, size, purged = row
    file = spool_file(path, root)
    return InstanceFile(study_uid, series_uid, sop_uid, syntax, file, size, bool(purged))


QUERIES = ImageQueries(instance=instance_file, study=study_files)
