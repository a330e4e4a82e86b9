"""The study index, read-only, as DICOM drivers query it (injected by the plugin wiring)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast
from urllib.request import pathname2url

from pydicom.dataset import Dataset

from agent.imaging.qr_query import Query, retrieve_query
from agent.vocabulary.spool import SpoolLayout, spool_file
from agent.vocabulary.study_index import PURGED_PATH, IndexUnavailable, Instance, Matches


class StudyIndexReader:
    """Queries the index tables of the journal at `db_path`, one read-only connection a request."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def find(self, identifier: Dataset, *, patient_root: bool) -> Matches:
        """The matches of a C-FIND identifier; BadIdentifier, IndexUnavailable."""
        query = Query.parse(identifier, patient_root=patient_root)
        return Matches(query.level, self._rows(query.sql, query.params), query.response)

    def instances(self, identifier: Dataset, *, patient_root: bool) -> list[Instance]:
        """The instances a C-MOVE/C-GET identifier names; BadIdentifier, IndexUnavailable."""
        sql, params = retrieve_query(identifier, patient_root=patient_root)
        root = SpoolLayout.of(self.db_path.parent).root  # the journal is in the state directory
        return [
            cast(
                Instance, (*row[:3], row[3] if row[3] == PURGED_PATH else spool_file(row[3], root))
            )
            for row in self._rows(sql, params)
        ]

    def study_of_accession(self, accession: str) -> tuple[str, str] | None:
        """(study UID, patient ID) of the first-received study with `accession`, if indexed."""
        if not self.db_path.exists():
            return None
        rows = self._rows(
            "SELECT study_uid, patient_id FROM im_studies WHERE accession = ?"
            " ORDER BY first_received LIMIT 1",
            [accession],
        )
        return None if not rows else (rows[0][0], rows[0][1])

    def indexed_files(self, folder: str) -> set[str]:
        """Stored paths of the instances (purged or not) whose file is in the spool `folder`."""
        if not self.db_path.exists():
            return set()
        prefix = folder.rstrip("/") + "/"
        rows = self._rows(  # a range on the path index: "0" sorts right after "/"
            "SELECT path FROM im_instances WHERE path >= ? AND path < ?",
            [prefix, prefix[:-1] + "0"],
        )
        return {row[0] for row in rows}

    def indexed_instances(self, sop_uids: list[str]) -> set[str]:
        """Which of `sop_uids` are indexed, purged or not."""
        found: set[str] = set()
        if not self.db_path.exists():
            return found
        for start in range(0, len(sop_uids), 500):
            chunk = sop_uids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT sop_uid FROM im_instances WHERE sop_uid IN ({marks})"
            found.update(row[0] for row in self._rows(sql, list(chunk)))
        return found

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{pathname2url(str(self.db_path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        Query.register(conn)
        return conn

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        try:
            conn = self._connect()
            try:
                return [tuple(row) for row in conn.execute(sql, params)]
            finally:
                conn.close()
        except sqlite3.Error as err:
            raise IndexUnavailable(str(err)) from err
