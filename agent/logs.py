"""structlog set-up: JSON lines (or console on a TTY), with secrets and patient data redacted."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"

# Keys whose values never reach a log line, whatever they hold.
SENSITIVE_KEY = re.compile(
    r"(secret|token|passw|authorization|cookie|credential|api_?key|access_?key|accessSecret"
    r"|^sign$|signature|id_?card|id_?no|id_?number|phone|mobile|^tel$|patient_?name|^name$"
    r"|doctor_?name|birth|address|patient_?id|identity_?id|sick_?id|accession|exam_?no"
    r"|姓名|身份证|电话|手机|住址|患者|病人|检查号)",
    re.IGNORECASE,
)

# Identifiers recognisable inside free text (platform answers, exception messages).
TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(bearer\s+)[\w.~+/=-]+"), rf"\1{MASK}"),
    (
        re.compile(
            r"""(?ix)
            ((?:access_?token|refresh_?token|token|client_?secret|secret|password|passwd
               |accessSecret|sign|patient_?name|name|doctor_?name|id_?card|id_?no|phone|mobile
               |patient_?id|identity_?id|sick_?id|accession_?(?:no|number)?|exam_?no
               |姓名|身份证号?|电话|手机号?|患者\s*ID|病人编号|检查号)
             [\\"']*\s*[:=：]\s*[\\"']*)  # quotes, also JSON-escaped ones (\")
            ([^"'&,;\s}\]]+)"""
        ),
        rf"\1{MASK}",
    ),
    (re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])"), MASK),  # resident ID card number
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), MASK),  # mainland mobile number
    (re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)"), MASK),  # landline number
)


class Redactor:
    """Masks sensitive keys, recognisable identifiers and every configured secret value."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add_secrets(self, values: Iterable[str]) -> None:
        """Mask these exact values wherever they appear (longest first)."""
        merged = set(self._secrets) | {v for v in values if len(v) >= 4}
        self._secrets = sorted(merged, key=len, reverse=True)

    def text(self, value: str) -> str:
        """Return `value` with secrets and identifiers masked."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        for pattern, replacement in TEXT_PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any) -> Any:
        """Redact a log value of any shape."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: MASK if isinstance(k, str) and SENSITIVE_KEY.search(k) else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set):
            return [self.value(v) for v in value]
        if isinstance(value, bool | int | float | type(None)):
            return value
        return self.text(str(value))

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor."""
        for key in list(event_dict):
            if key in {"timestamp", "level", "logger"}:
                continue
            if SENSITIVE_KEY.search(key):
                event_dict[key] = MASK
            else:
                event_dict[key] = self.value(event_dict[key])
        return event_dict


REDACTOR = Redactor()


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send structlog and stdlib logging, redacted, to `stream` (stdout) as JSON or console text."""
    stream = stream or sys.stdout
    REDACTOR.add_secrets(secrets)
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        REDACTOR,
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom's INFO and DEBUG lines quote identifiers (patient IDs, names, accession
    # numbers) from C-FIND and C-STORE requests: never below WARNING.
    for noisy in ("aiohttp.access", "asyncio", "pynetdicom", "pydicom"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    warnings.showwarning = _log_warning
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def peer_text(value: object, limit: int = 64) -> str:
    """A peer-controlled value for a log line: one line of printable ASCII (control and non-ASCII
    characters escaped; bytes read as Latin-1), at most `limit` characters and "..." (a log line
    must not be forged or flooded by whoever sent it)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped[:limit] + "..." if len(escaped) > limit else escaped


_warned: set[tuple[str, str, int]] = set()


def _log_warning(  # noqa: PLR0917 - the signature of warnings.showwarning
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A library's `warnings.warn` as one log line per kind and place, instead of raw text on
    stderr. Never its message: it quotes what a peer sent (a form field's name, a DICOM value)."""
    where = (category.__name__, filename, lineno)
    if where in _warned:
        return
    _warned.add(where)
    structlog.get_logger("py.warnings").warning(
        "library.warning", category=category.__name__, at=f"{filename}:{lineno}"
    )
