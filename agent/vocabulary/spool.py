"""Where received images live under the state directory: written by DICOM sources, indexed and
audited by the imaging domain (the index stores paths relative to `root`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
