"""A size-rotated log file with the same structlog JSON lines and redaction as stdout."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import structlog

from agent.windows.paths import default_log_file

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 10


@dataclass(frozen=True)
class LogFileSettings:
    """Where the log file is and how it rotates."""

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS


def log_file_settings(log: Any, default: Path | None = None) -> LogFileSettings | None:
    """`[log] file / file_max_bytes / file_backups` of a LogSection, or `default` if no file."""
    path = getattr(log, "file", None) or default
    if path is None:
        return None
    return LogFileSettings(
        Path(path),
        getattr(log, "file_max_bytes", DEFAULT_MAX_BYTES),
        getattr(log, "file_backups", DEFAULT_BACKUPS),
    )


def add_log_file(settings: LogFileSettings, *, only: bool = False) -> RotatingFileHandler:
    """Also write every log line, as JSON, to a rotating file (only there if `only`).

    Call after `agent.logs.configure_logging`: the file reuses its processor chain (redaction
    included), with the JSON renderer whatever the console format is.
    """
    root = logging.getLogger()
    configured = next(
        (
            h.formatter
            for h in root.handlers
            if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
        ),
        None,
    )
    if configured is None:
        raise RuntimeError("configure_logging() must run before add_log_file()")
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        settings.path,
        maxBytes=settings.max_bytes,
        backupCount=settings.backups,
        encoding="utf-8",
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=configured.foreign_pre_chain,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
    )
    if only:
        for old in root.handlers:
            old.close()
        root.handlers[:] = [handler]
    else:
        root.addHandler(handler)
    return handler


def configure_service_logging(level: str, secrets: list[str], log: Any) -> RotatingFileHandler:
    """A service has no console: log JSON lines, redacted, to the file only."""
    from agent.logs import configure_logging

    configure_logging(level, "json", secrets, stream=io.StringIO())  # replaced just below
    settings = log_file_settings(log, default_log_file())
    assert settings is not None
    return add_log_file(settings, only=True)
