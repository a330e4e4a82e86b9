"""How the runtime meets the reprocessing domain: its handler and its start-up jobs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.quality import QualityHandler
from agent.reprocessing.records import fed_values

__all__ = ["ReprocessingConfig", "fed_values", "feeds_records", "handlers", "startup"]


def feeds_records(section: Any) -> bool:
    """Whether a config section is this domain's (whose records an uplink may check)."""
    return isinstance(section, ReprocessingConfig)


def handlers(name: str, config: ReprocessingConfig) -> list[ReprocessingHandler | QualityHandler]:
    """The domain handlers for events from the endoscopy centre and its quality records."""
    return [
        ReprocessingHandler(name, config),
        QualityHandler(f"{name}:quality", config, config.quality),
    ]


def startup(name: str, config: ReprocessingConfig) -> list[Callable[[sqlite3.Connection], Any]]:
    """Queue master data (scopes, readers, steps) whose content the platform has not had."""
    return [ReprocessingHandler(name, config).queue_master_data]
