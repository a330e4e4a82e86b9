"""What both capture sources share: config keys, receipt → event, rejects and quarantine."""

from __future__ import annotations

import codecs
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import structlog
from pydantic import Field, field_validator, model_validator

from agent.config import PluginSection, TimeZoneName
from agent.events import Event, utcnow
from drivers.washer import escpos
from drivers.washer.formats import csv_log, thermal_cn, xml_log
from drivers.washer.formats.template import TemplateConfig, TemplateParser
from drivers.washer.receipt import ReceiptError, WasherCycle, cycle_payload, decode

log = structlog.get_logger(__name__)

ReceiptFormat = Literal["thermal_cn", "csv", "xml", "template"]
Parser = Callable[[str, tzinfo], WasherCycle]
# Replays of the same receipt (a reprint, a file seen again after a crash) get the same event id,
# so the journal keeps one event for them.
_EVENT_NAMESPACE = uuid.UUID("6f1d3c1e-5b7a-4d0e-9a57-2b8e0c4f9d21")


class WasherSourceConfig(PluginSection):
    """Keys every washer source has."""

    format: ReceiptFormat
    template: TemplateConfig | None = None  # format "template" only
    timezone: TimeZoneName = "Asia/Shanghai"  # receipts print local times
    washer_id: str | None = None  # when the receipt has no machine id; default: the source name
    encoding: str = "gb18030"
    max_bytes: Annotated[int, Field(ge=256, le=64 * 1024 * 1024)] = 64 * 1024

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as err:
            raise ValueError(f"unknown encoding {value!r}") from err
        return value

    @model_validator(mode="after")
    def _template_with_format(self) -> WasherSourceConfig:
        if (self.format == "template") != (self.template is not None):
            raise ValueError(
                'a [template] table is required with format = "template" and only there'
            )
        return self


def make_parser(config: WasherSourceConfig) -> Parser:
    """The parse function of the configured format."""
    match config.format:
        case "thermal_cn":
            return thermal_cn.parse
        case "csv":
            return csv_log.parse
        case "xml":
            return xml_log.parse
        case "template":
            assert config.template is not None  # enforced by the model
            return TemplateParser(config.template).parse


def sha256(data: bytes) -> str:
    """Hex SHA-256 of the raw receipt bytes."""
    return hashlib.sha256(data).hexdigest()


class Receipts:
    """Turns raw receipts into events for one source; `counters` counts rejects by reason."""

    def __init__(self, source: str, config: WasherSourceConfig) -> None:
        self.source = source
        self.config = config
        self.parse = make_parser(config)
        self.tz = ZoneInfo(config.timezone)
        self.washer = config.washer_id or source
        self.counters: Counter[str] = Counter()
        self.cycles = 0

    def text(self, raw: bytes) -> str:
        """The decoded, control-stripped text; ReceiptError if it cannot be had."""
        if len(raw) > self.config.max_bytes:
            raise ReceiptError(
                "oversize", f"{len(raw)} bytes, max_bytes is {self.config.max_bytes}"
            )
        stripped = escpos.strip(raw)
        if stripped.truncated:
            raise ReceiptError("truncated", "the data ends inside an ESC/POS command")
        text = decode(stripped.text, self.config.encoding)
        if not text.strip():
            raise ReceiptError("empty", "no text")
        return text

    def cycle_event(self, raw: bytes) -> Event:
        """The `washer.cycle` event of a receipt; ReceiptError says why there is none, always.

        Blocking (a large receipt takes a while to parse): run it in a worker thread.
        """
        digest = sha256(raw)
        try:
            text = self.text(raw)
            cycle = self.parse(text, self.tz)
            payload = cycle_payload(
                cycle, washer=self.washer, fmt=self.config.format, sha256=digest, text=text
            )
            # What the journal will store: a value it would refuse fails here, where the
            # receipt can still be quarantined, not after it was taken off the printer line.
            json.dumps(payload, allow_nan=False)
        except ReceiptError:
            raise
        except Exception as err:
            # A defect of ours must not cost the receipt: it is quarantined like any unreadable
            # one, and the alert names the parser. Never the message: it may quote the text.
            raise ReceiptError(
                "parser_failed", f"the {self.config.format} parser failed ({type(err).__name__})"
            ) from err
        self.cycles += 1
        return self._event("washer.cycle", payload, digest, occurred_at=cycle.ended_at)

    def rejected_event(self, err: ReceiptError, quarantined: Path, digest: str, size: int) -> Event:
        """The `washer.rejected` event of a quarantined receipt; counts and logs the reject once."""
        self.counters[err.reason] += 1
        # Never the text: it carries operators' names.
        log.warning("washer.receipt_rejected", source=self.source, reason=err.reason, size=size)
        payload = {
            "reason": str(err),
            "format": self.config.format,
            "quarantined": str(quarantined),
            "receipt_sha256": digest,
            "size": size,
        }
        return self._event("washer.rejected", payload, digest)

    def _event(self, kind: str, payload: dict[str, Any], digest: str, **kw: Any) -> Event:
        key = uuid.uuid5(_EVENT_NAMESPACE, f"{kind}|{self.source}|{digest}")
        return Event(kind, self.source, payload, id=str(key), **kw)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (blocking)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def quarantine_name(raw: bytes) -> str:
    """`<UTC timestamp>-<sha8>.bin` for a quarantined printer receipt."""
    return f"{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}-{sha256(raw)[:8]}.bin"
