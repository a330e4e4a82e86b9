"""The RFID reader source: a device link, a frame parser, debounce, one `rfid.read` per tap."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

import structlog
from pydantic import Field, field_validator, model_validator

from agent.config import PluginSection, Seconds
from agent.events import Event, utcnow
from agent.vocabulary.patterns import compile_pattern
from agent.vocabulary.tags import ByteOrder, Read, mask_tag
from drivers.base import Driver, DriverContext
from drivers.rfid import chafon
from drivers.rfid.debounce import Debouncer
from drivers.rfid.decimal_lines import DecimalLineParser
from drivers.rfid.framing import FrameParser
from drivers.rfid.line_pattern import PatternLineParser
from drivers.rfid.rdm6300 import Rdm6300Parser
from drivers.transport import Backoff, Link, parse_url

log = structlog.get_logger(__name__)

ReaderProtocol = Literal["rdm6300", "decimal", "chafon", "regex"]


class RfidReaderConfig(PluginSection):
    """[sources.<name>] type = "rfid_reader" """

    url: str
    protocol: ReaderProtocol
    pattern: str | None = None  # protocol "regex" only: a named group `tag` is the code
    reader_id: str | None = None  # the station reader's id on the platform; default: source name
    byte_order: ByteOrder = "as-read"
    debounce: Annotated[float, Field(ge=0)] = 2.0
    max_line: Annotated[int, Field(ge=8, le=65536)] = 256
    poll_interval: Annotated[float, Field(ge=0)] = 0.0  # chafon: seconds between inventories
    address: Annotated[int, Field(ge=0, le=255)] = 0xFF  # chafon: Adr of polls (FF: any)
    reconnect_initial: Seconds = 1.0
    reconnect_max: Seconds = 30.0

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RfidReaderConfig:
        if (self.protocol == "regex") != (self.pattern is not None):
            raise ValueError('pattern is required with protocol = "regex" and only allowed there')
        if self.poll_interval and self.protocol != "chafon":
            raise ValueError('poll_interval is only allowed with protocol = "chafon"')
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")
        return self


def make_parser(config: RfidReaderConfig, source: str = "") -> FrameParser:
    """Return a fresh parser for the configured protocol."""
    match config.protocol:
        case "rdm6300":
            return Rdm6300Parser(source)
        case "decimal":
            return DecimalLineParser(source, config.max_line)
        case "chafon":
            return chafon.ChafonParser(source)
        case "regex":
            assert config.pattern is not None  # enforced by the model
            return PatternLineParser(config.pattern, source, config.max_line)


class RfidReader(Driver):
    """Reads tags from one reader; each tap is emitted and handled only once emit returns."""

    def __init__(self, name: str, config: RfidReaderConfig) -> None:
        super().__init__(name)
        self.config = config
        self.reader_id = config.reader_id or name
        self.parser = make_parser(config, name)
        self.debouncer = Debouncer(config.debounce)
        self.link = Link(
            parse_url(config.url),
            source=name,
            url=config.url,
            backoff=Backoff(config.reconnect_initial, config.reconnect_max),
        )
        self.last_frame_at: datetime | None = None
        self.taps = 0

    @property
    def online(self) -> bool:
        """True while the reader is connected."""
        return self.link.online

    @property
    def errors(self) -> dict[str, int]:
        """Rejected input so far, by reason."""
        return dict(self.parser.errors)

    def is_online(self) -> bool:
        """True while the reader is connected."""
        return self.link.online

    def link_detail(self) -> str:
        """The reader's URL, and why it is offline."""
        return self.link.detail()

    def stats(self) -> dict[str, int]:
        """Taps journaled and rejected input by reason."""
        return {**self.parser.errors, "taps": self.taps}

    async def run(self, ctx: DriverContext) -> None:
        """Read, parse and emit taps until cancelled; an absent reader is retried, never raised."""

        async def on_data(data: bytes) -> None:
            for read in self.parser.feed(data):
                await self._handle(ctx, read)

        if not self.config.poll_interval:
            await self.link.run(on_data, on_connect=self.parser.reset)
            return
        async with asyncio.TaskGroup() as group:
            group.create_task(self._poll())
            await self.link.run(on_data, on_connect=self.parser.reset)

    async def _poll(self) -> None:
        """Ask an answer-mode reader for an inventory every `poll_interval` while connected."""
        command = chafon.encode(self.config.address, chafon.CMD_INVENTORY, None)
        while True:
            await self.link.wait_until(lambda: self.link.online)
            await self.link.write(command)
            await asyncio.sleep(self.config.poll_interval)

    async def _handle(self, ctx: DriverContext, read: Read) -> None:
        now = utcnow()
        self.last_frame_at = now
        tag = read.canonical(self.config.byte_order)
        if not self.debouncer.is_new_tap(tag):
            return
        payload = {
            "reader_id": self.reader_id,
            "tag": tag,
            "raw": read.raw,
            "protocol": self.config.protocol,
            "bits": read.bits,
        }
        await ctx.emit(Event("rfid.read", self.name, payload, occurred_at=now))
        self.taps += 1
        log.debug("rfid.tap", source=self.name, tag_masked=mask_tag(tag), bits=read.bits)


def build(name: str, config: RfidReaderConfig) -> RfidReader:
    """Make the reader source from its validated config."""
    return RfidReader(name, config)
