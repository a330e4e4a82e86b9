"""What platforms serving images (WADO-URI links) ask of the imaging domain's study index."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceFile:
    """One indexed instance: where its file is in the spool, as received."""

    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax: str
    path: str
    size: int
    purged: bool = False  # the spool retention policy deleted its file (the row is kept)


@dataclass(frozen=True, slots=True)
class ImageQueries:
    """The study index's read side for image links, handed by the wiring to platforms."""

    # (conn, sop_uid): the instance with this SOP Instance UID, or None.
    instance: Callable[[sqlite3.Connection, str], InstanceFile | None]
    # (conn, study_uid): the study's instances, by series then instance number.
    study: Callable[[sqlite3.Connection, str], list[InstanceFile]]
