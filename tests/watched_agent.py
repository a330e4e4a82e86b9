"""An `AgentProcess` whose JSON log lines are read as they come, so a test can await one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tests.agent_process import AgentProcess

LogLine = dict[str, Any]


class WatchedAgent(AgentProcess):
    """The agent subprocess (run with `[log] format = "json"`); `wait_log` awaits a log line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: list[str] = []
        self.logs: list[LogLine] = []
        self._changed = asyncio.Condition()
        self._pump: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        """Start, return at READY=1, and from then on read stdout line by line."""
        # What it prints before READY is a few lines: far from filling the pipe meanwhile.
        await super().start(timeout)
        self._pump = asyncio.create_task(self._read(), name="agent-stdout")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            async with self._changed:
                self.lines.append(line)
                try:
                    parsed = json.loads(line)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    self.logs.append(parsed)
                self._changed.notify_all()

    async def wait_log(self, check: Callable[[LogLine], bool], timeout: float = 15.0) -> LogLine:
        """Return the first log line (from the start) for which `check` holds."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: any(check(line) for line in self.logs))
        return next(line for line in self.logs if check(line))

    async def output(self) -> str:
        """Everything the agent printed (so far, once it is being read)."""
        if self._pump is None:
            return await super().output()
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """SIGKILL, reap, and read the rest of its output."""
        await super().kill()
        await self._drain()

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, and read the rest of its output."""
        code = await super().stop(timeout)
        await self._drain()
        return code

    async def _drain(self) -> None:
        if self._pump is not None:
            async with asyncio.timeout(10):
                await self._pump
