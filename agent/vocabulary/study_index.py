"""What DICOM drivers (the Q/R SCP, image capture) ask of the imaging domain's study index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset

NO_MATCH_CLASS, UNABLE = 0xA900, 0xC000  # statuses a bad identifier is answered with
Instance = tuple[str, str, str, str]  # sop_uid, sop_class, transfer_syntax, path in the spool
PURGED_PATH = ""  # an Instance's path when the spool retention policy deleted its file


class BadIdentifier(Exception):
    """The request's identifier cannot be answered; `status` and `tag` go into the response."""

    def __init__(self, message: str, tag: int | None = None, status: int = UNABLE) -> None:
        super().__init__(message)
        self.tag = tag
        self.status = status


class IndexUnavailable(Exception):
    """The study index cannot be read now (the journal's database error as the message)."""


@dataclass(frozen=True, slots=True)
class Matches:
    """A C-FIND's matches: the level, the rows, and each row's pending response identifier."""

    level: str
    rows: list[tuple[Any, ...]]
    response: Callable[[tuple[Any, ...], str], Dataset]  # (row, retrieve AE title)


class SpoolIndex(Protocol):
    """What the DICOM start-up scan asks the study index (IndexUnavailable when it fails)."""

    def indexed_files(self, folder: str) -> set[str]:
        """The paths (as stored: relative to the spool root) of the instances, purged or not,
        whose file is in the spool folder `folder` (e.g. `2026/12/08`)."""
        ...

    def indexed_instances(self, sop_uids: list[str]) -> set[str]:
        """Which of `sop_uids` the index has, purged or not."""
        ...


class StudyIndex(SpoolIndex, Protocol):
    """Read-only queries on the study index; BadIdentifier or IndexUnavailable when they fail
    (any other exception: the identifier could not be decoded)."""

    def find(self, identifier: Dataset, *, patient_root: bool) -> Matches:
        """The matches of a C-FIND identifier, in the order they are answered."""
        ...

    def instances(self, identifier: Dataset, *, patient_root: bool) -> list[Instance]:
        """The instances a C-MOVE/C-GET identifier names."""
        ...

    def study_of_accession(self, accession: str) -> tuple[str, str] | None:
        """(study UID, patient ID) of the first-received study with `accession`, if indexed."""
        ...


StudyIndexFactory = Callable[[Path], StudyIndex]  # the journal's database file -> its index
