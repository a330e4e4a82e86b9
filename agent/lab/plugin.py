"""How the runtime meets the lab domain: its handler."""

from __future__ import annotations

from agent.lab.config import LabConfig
from agent.lab.handler import LabHandler

__all__ = ["LabConfig", "handlers"]


def handlers(name: str, config: LabConfig) -> list[LabHandler]:
    """The lab domain's handler (reports, files, devices, QC, sharing records, catalogue)."""
    return [LabHandler(name, config)]
