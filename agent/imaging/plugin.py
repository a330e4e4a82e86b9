"""How the runtime meets the imaging domain: its handler and its scheduler task."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from agent.imaging.config import ImagingConfig
from agent.imaging.forwarding import rebase_queued_files
from agent.imaging.handler import ImagingHandler
from agent.imaging.purger import SpoolKeeper
from agent.imaging.scheduler import ImagingScheduler

__all__ = ["ImagingConfig", "handlers", "startup", "tasks"]


def handlers(name: str, config: ImagingConfig) -> list[ImagingHandler]:
    """The study index's handler (instances, exams, stability, statistics, rejections)."""
    return [ImagingHandler(name, config)]


def tasks(name: str, config: ImagingConfig) -> list[Callable[[Any], Awaitable[None]]]:
    """The scheduler (quiet studies become stable, statistics fire at their local times) and the
    spool's keeper (disk pressure, retention)."""
    return [ImagingScheduler(name, config).run, SpoolKeeper(name, config).run]


def startup(name: str, config: ImagingConfig) -> list[Callable[[sqlite3.Connection], Any]]:
    """Re-point undelivered images at the spool beside the journal (a moved state directory)."""
    return [rebase_queued_files]
