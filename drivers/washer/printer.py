"""The washer's printer line: receipts end at a cut, an end-marker line or an idle gap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from pydantic import field_validator, model_validator

from agent.config import Seconds
from drivers.base import Driver, DriverContext
from drivers.files import write_durably
from drivers.transport import Backoff, Link, parse_url
from drivers.washer import escpos
from drivers.washer.assembler import Chunk, ReceiptAssembler
from drivers.washer.capture import Receipts, WasherSourceConfig, quarantine_name, sha256
from drivers.washer.receipt import ReceiptError

log = structlog.get_logger(__name__)


class WasherPrinterConfig(WasherSourceConfig):
    """[sources.<name>] type = "washer_printer" """

    url: str
    idle_gap: Seconds = 3.0  # a receipt without a cut ends this long after its last byte
    end_marker: str | None = None  # a line containing this ends a receipt
    reconnect_initial: Seconds = 1.0
    reconnect_max: Seconds = 30.0

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("end_marker")
    @classmethod
    def _marker_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("end_marker must contain visible text")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> WasherPrinterConfig:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")
        if self.end_marker is not None:
            try:
                self.end_marker.encode(self.encoding)
            except UnicodeEncodeError as err:
                raise ValueError(f"end_marker cannot be written in {self.encoding}") from err
        return self


class WasherPrinter(Driver):
    """Captures receipts from a washer's printer port; each is emitted or quarantined."""

    def __init__(self, name: str, config: WasherPrinterConfig) -> None:
        super().__init__(name)
        self.config = config
        self.receipts = Receipts(name, config)
        marker = config.end_marker.encode(config.encoding) if config.end_marker else None
        self.assembler = ReceiptAssembler(config.max_bytes, marker)
        self.link = Link(
            parse_url(config.url),
            source=name,
            url=config.url,
            backoff=Backoff(config.reconnect_initial, config.reconnect_max),
        )
        self._lock = asyncio.Lock()
        self._generation = 0  # bumped by every chunk of data: a stale idle timer does nothing
        self._idle: asyncio.Queue[int] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self.blank = 0

    @property
    def online(self) -> bool:
        """True while the printer line is connected."""
        return self.link.online

    @property
    def counters(self) -> dict[str, int]:
        """Rejected receipts so far, by reason."""
        return dict(self.receipts.counters)

    def is_online(self) -> bool:
        """True while the printer line is connected."""
        return self.link.online

    def link_detail(self) -> str:
        """The printer line's URL, and why it is offline."""
        return self.link.detail()

    def stats(self) -> dict[str, int]:
        """Rejected receipts by reason, and blank cuts."""
        return {**self.receipts.counters, "blank": self.blank}

    async def run(self, ctx: DriverContext) -> None:
        """Capture receipts until cancelled; an absent printer line is retried, never raised."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._idle_flusher(ctx))
                await self.link.run(lambda data: self._on_data(ctx, data))
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._save_interrupted(ctx)

    async def _on_data(self, ctx: DriverContext, data: bytes) -> None:
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
        async with self._lock:
            for chunk in self.assembler.feed(data):
                await self._handle(ctx, chunk)
        if self.assembler.pending:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                self.config.idle_gap, self._idle.put_nowait, self._generation
            )

    async def _idle_flusher(self, ctx: DriverContext) -> None:
        while True:
            generation = await self._idle.get()
            async with self._lock:
                if generation != self._generation:
                    continue  # more data came after the timer was set
                chunk = self.assembler.flush()
                if chunk is not None:
                    await self._handle(ctx, chunk)

    async def _handle(self, ctx: DriverContext, chunk: Chunk) -> None:
        try:
            if chunk.oversize:
                raise ReceiptError("oversize", f"more than max_bytes = {self.config.max_bytes}")
            event = await asyncio.to_thread(self.receipts.cycle_event, chunk.data)
        except ReceiptError as err:
            if err.reason == "empty":
                # Paper feed and cut, printer init: commands only, no receipt to keep.
                self.blank += 1
                log.debug("washer.blank_cut", source=self.name, size=len(chunk.data))
                return
            path = self._quarantine_dir(ctx) / quarantine_name(chunk.data)
            await asyncio.to_thread(write_durably, path, chunk.data)
            digest, size = sha256(chunk.data), len(chunk.data)
            await ctx.emit(self.receipts.rejected_event(err, path, digest, size))
            return
        try:
            await ctx.emit(event)
        except BaseException:
            # A printer cannot print again: keep the bytes before the error goes up (a later
            # replay of the file gives the same event id, so a commit that did happen is not
            # doubled).
            path = self._quarantine_dir(ctx) / quarantine_name(chunk.data)
            await asyncio.shield(asyncio.to_thread(write_durably, path, chunk.data))
            raise

    def _quarantine_dir(self, ctx: DriverContext) -> Path:
        return ctx.state_dir / "quarantine" / "washer" / self.name

    def _save_interrupted(self, ctx: DriverContext) -> None:
        """Keep a receipt cut short by shutdown in quarantine; it can no longer be emitted."""
        chunk = self.assembler.flush()
        if chunk is None or not escpos.strip(chunk.data).text.strip():
            return
        path = self._quarantine_dir(ctx) / quarantine_name(chunk.data)
        try:
            write_durably(path, chunk.data)  # blocking, once, while stopping
        except OSError as err:
            log.error("washer.receipt_lost", source=self.name, size=len(chunk.data), error=str(err))
            return
        log.warning("washer.receipt_interrupted", source=self.name, size=len(chunk.data))


def build(name: str, config: WasherPrinterConfig) -> WasherPrinter:
    """Make the printer-line source from its validated config."""
    return WasherPrinter(name, config)
