"""Run `edge-agent simulate PLATFORM` as a subprocess and drive it through its control API."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp


class SimulatorProcess:
    """One `edge-agent simulate` subprocess; `start()` returns once it printed its URLs."""

    def __init__(self, platform: str, *args: str | Path) -> None:
        self.argv = ["simulate", platform, "--port", "0", "--control-port", "0", *map(str, args)]
        self.proc: asyncio.subprocess.Process | None = None
        self.printed: dict[str, str] = {}
        self.lines: list[str] = []

    @property
    def control(self) -> str:
        """The control API's base URL (…/_sim)."""
        return self.printed["control_url"]

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and read what it prints up to `control_url = …`."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while "control_url" not in self.printed:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError("the simulator exited:\n" + "".join(self.lines))
                self.lines.append(line)
                name, sep, value = line.partition(" = ")
                if sep:
                    self.printed[name.strip()] = value.strip()

    async def stop(self) -> int:
        """Ctrl-C, as a user would; return the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await self.proc.communicate()
        return self.proc.returncode or 0

    async def kill(self) -> None:
        """SIGKILL and reap (a failed test's cleanup)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.communicate()

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One control API call; its JSON answer (raises on an HTTP error)."""
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.control + path, json=body) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()
