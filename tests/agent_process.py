"""Run the real `edge-agent run` as a subprocess, with a notify socket to await READY=1."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import ClassVar


class AgentProcess:
    """One agent subprocess; `start()` returns once it sent READY=1."""

    live: ClassVar[set[AgentProcess]] = set()  # killed after each test (see conftest)

    def __init__(self, config: Path, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.socket_path = tmp_path / f"notify-{os.getpid()}-{id(self)}.sock"
        self.env = {**os.environ, **(env or {}), "NOTIFY_SOCKET": str(self.socket_path)}
        self.proc: asyncio.subprocess.Process | None = None
        self.notifications: list[str] = []
        self._sock: socket.socket | None = None

    async def start(self, timeout: float = 30.0) -> None:
        """Start the agent and wait for READY=1 (fail if it exits first)."""
        if sys.platform == "win32":
            raise NotImplementedError("READY=1 comes over systemd's AF_UNIX notify socket")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.socket_path))
        self._sock.setblocking(False)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
        )
        AgentProcess.live.add(self)
        await self.wait_for_notification("READY=1", timeout)

    async def wait_for_notification(self, state: str, timeout: float) -> None:
        """Await a datagram containing `state`; raise if the agent exits first."""
        assert self._sock is not None and self.proc is not None
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            async with asyncio.timeout(timeout):
                while state not in self.notifications:
                    received = asyncio.ensure_future(loop.sock_recv(self._sock, 4096))
                    done, _ = await asyncio.wait(
                        {received, exited}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if received in done:
                        self.notifications.extend(received.result().decode().splitlines())
                    else:
                        received.cancel()
                        output = await self.output()
                        raise AssertionError(f"agent exited before {state}:\n{output}")
        finally:
            if not exited.done():
                exited.cancel()

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        self._close()
        return code

    async def kill(self) -> None:
        """SIGKILL and reap."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._close()

    async def output(self) -> str:
        """Everything the agent printed (call after it exited)."""
        assert self.proc is not None and self.proc.stdout is not None
        return (await self.proc.stdout.read()).decode(errors="replace")

    def _close(self) -> None:
        AgentProcess.live.discard(self)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.socket_path.unlink(missing_ok=True)
