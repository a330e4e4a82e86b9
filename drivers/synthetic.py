"""A synthetic event source for the demo, tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from pydantic import Field

from agent.config import ConfigPath, PluginSection
from agent.events import Event
from drivers.base import Driver, DriverContext
from drivers.files import BINARY


class SyntheticConfig(PluginSection):
    """[sources.<name>] type = "synthetic" """

    kind: str = "synthetic.reading"
    rate: Annotated[float, Field(ge=0)] = 1.0  # events/s per producer; 0 = as fast as possible
    producers: Annotated[int, Field(ge=1, le=1024)] = 1
    count: Annotated[int, Field(ge=0)] = 0  # events per producer; 0 = unlimited
    payload: dict[str, Any] = {}
    ack_log: ConfigPath | None = None  # test tool: append each acknowledged event id


class SyntheticSource(Driver):
    """Emits numbered events from `producers` concurrent tasks."""

    def __init__(self, name: str, config: SyntheticConfig) -> None:
        super().__init__(name)
        self.config = config

    async def run(self, ctx: DriverContext) -> None:
        """Run every producer until each has emitted `count` events (or forever)."""
        ack_fd = None
        if self.config.ack_log is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | BINARY  # LF stays LF on Windows
            ack_fd = os.open(self.config.ack_log, flags, 0o644)
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self.config.producers):
                    group.create_task(self._produce(ctx, index, ack_fd))
        finally:
            if ack_fd is not None:
                os.close(ack_fd)

    async def _produce(self, ctx: DriverContext, index: int, ack_fd: int | None) -> None:
        config = self.config
        source = f"{self.name}/{index}"
        seq = 0
        while config.count == 0 or seq < config.count:
            seq += 1
            event = Event(config.kind, source, {**config.payload, "seq": seq})
            await ctx.emit(event)
            if ack_fd is not None:
                # One write(2) per line: complete in the file even if we are killed right after.
                os.write(ack_fd, f"{event.id}\n".encode())
            if config.rate:
                await asyncio.sleep(1.0 / config.rate)
            else:
                await asyncio.sleep(0)  # let the other producers in


def build(name: str, config: SyntheticConfig) -> SyntheticSource:
    """Make the source from its validated config."""
    return SyntheticSource(name, config)
