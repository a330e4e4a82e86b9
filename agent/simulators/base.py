"""What every cloud simulator shares: serving, stopping, and the fault switches tests flip."""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)


@dataclass
class Faults:
    """Switches that make a simulated cloud misbehave."""

    fail_next: int = 0  # answer the next N requests with HTTP 503
    fail_every: int = 0  # answer every Nth request with HTTP 503 (0 = never)
    delay: float = 0.0  # seconds before answering (timeouts); ends early at stop()
    reset_next: int = 0  # drop the connection of the next N requests without an answer
    hold: bool = False  # keep every request waiting until release_held()
    # An outage that recovers: HTTP 503 to every request while
    # outage_after <= seconds since start() < outage_after + outage_for (0 = none).
    outage_after: float = 0.0
    outage_for: float = 0.0

    def in_outage(self, elapsed: float) -> bool:
        """Whether `elapsed` seconds after the start fall in the outage window."""
        return self.outage_for > 0 and (
            self.outage_after <= elapsed < self.outage_after + self.outage_for
        )


@dataclass
class Counts:
    """What every simulator counts; each simulator's `received` extends it."""

    requests: int = 0  # data requests, whatever their fate
    held: int = 0  # requests that waited at the hold switch
    tokens_issued: int = 0


R = TypeVar("R", bound=Counts)


class SimulatedCloud(ABC, Generic[R]):
    """A fake platform served by aiohttp: `await start()`, inspect `received`, `await stop()`."""

    def __init__(self, name: str, host: str, port: int, faults: Faults, received: R) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.faults = faults
        self.received = received
        self.arrived = asyncio.Condition()  # notified whenever `received` changes
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._started_at = time.monotonic()
        self._outage_logs: list[asyncio.TimerHandle] = []

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the platform's endpoints."""

    async def start(self) -> None:
        """Listen on the configured host and port (0 picks a free port)."""
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._started_at = time.monotonic()
        if self.faults.outage_for > 0:
            loop = asyncio.get_running_loop()
            start, end = self.faults.outage_after, self.faults.outage_after + self.faults.outage_for
            self._outage_logs = [
                loop.call_later(start, self._log_outage, "simulator.outage_started"),
                loop.call_later(end, self._log_outage, "simulator.outage_over"),
            ]

    def _log_outage(self, event: str) -> None:
        log.warning(event, simulator=self.name, seconds=self.faults.outage_for)

    async def stop(self) -> None:
        """Stop listening; held and delayed answers end now."""
        self._stopping.set()
        self._released.set()
        for handle in self._outage_logs:
            handle.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def release_held(self) -> None:
        """Answer every held request, and hold no more."""
        self.faults.hold = False
        self._released.set()

    async def wait_until(self, check: Callable[[R], bool]) -> None:
        """Return once `check(received)` holds (checked whenever it changes)."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: check(self.received))

    async def wait_held(self, count: int) -> None:
        """Return once `count` requests are waiting at the hold switch."""
        await self.wait_until(lambda r: r.held >= count)

    async def misbehave(self, request: web.Request) -> web.Response | None:
        """Count the request and apply the switches; a response to send instead, or None."""
        self.received.requests += 1
        faults = self.faults
        if faults.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), faults.delay)
        if faults.hold:
            async with self.arrived:
                self.received.held += 1
                self.arrived.notify_all()
            await self._released.wait()
        if faults.reset_next > 0:
            faults.reset_next -= 1
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()  # never reaches the client: the socket is gone
        if faults.in_outage(time.monotonic() - self._started_at):
            return web.json_response({"error": "service unavailable (outage)"}, status=503)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return web.json_response({"error": "busy"}, status=503)
        if faults.fail_every and self.received.requests % faults.fail_every == 0:
            return web.json_response({"error": "busy"}, status=503)
        return None
