"""A real mosquitto for tests: free port, sessions persisted on disk, restart, optional TLS."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers import required_tool


def mosquitto_binary() -> str:
    """Return the mosquitto executable; skip the test without it, but fail when CI=true."""
    return required_tool("mosquitto", "mosquitto")


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A test CA and a server certificate it signed for IP 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_certificate(directory: Path) -> ServerCertificate:
    """Make a throw-away CA and a server certificate for 127.0.0.1 with the openssl CLI."""
    openssl = required_tool("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    made = ServerCertificate(
        directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    ca_key, csr, san = directory / "ca.key", directory / "server.csr", directory / "san.ext"
    san.write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    for step in (
        f"req -x509 -days 1 {ec} -keyout {ca_key} -out {made.ca} -subj /CN=test-ca",
        f"req {ec} -keyout {made.key} -out {csr} -subj /CN=127.0.0.1",
        f"x509 -req -days 1 -in {csr} -CA {made.ca} -CAkey {ca_key} -CAcreateserial"
        f" -out {made.cert} -extfile {san}",
    ):
        subprocess.run([openssl, *shlex.split(step)], check=True, capture_output=True)
    return made


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """One mosquitto process on 127.0.0.1:`port`, anonymous, persisting to `directory`."""

    def __init__(self, binary: str, directory: Path, tls: ServerCertificate | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log_path = directory / "mosquitto.log"
        self.conf = directory / "mosquitto.conf"
        self._proc: asyncio.subprocess.Process | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + (f"certfile {tls.cert}\nkeyfile {tls.key}\n" if tls else "")
            + "allow_anonymous true\n"
            + _run_as_me()
            + "persistence true\n"
            f"persistence_location {directory}/\n"
            "autosave_interval 0\n"  # save only on shutdown: a restart keeps the sessions
            f"log_dest file {self.log_path}\n"
            "log_type all\n",
            encoding="utf-8",
        )

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once its port accepts connections."""
        self._proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            str(self.conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(timeout):
            while not await self._accepts():
                if self._proc.returncode is not None:
                    raise RuntimeError(f"mosquitto exited at start:\n{self.log()}")
                await asyncio.sleep(0.02)

    async def _accepts(self) -> bool:
        try:
            _, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    async def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistent sessions) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        """Stop and start again on the same port, keeping the persisted sessions."""
        await self.stop()
        await self.start()

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@asynccontextmanager
async def running_mosquitto(
    directory: Path, tls: ServerCertificate | None = None
) -> AsyncIterator[Mosquitto]:
    """Run a broker for the duration of the block; always stop it."""
    broker = Mosquitto(mosquitto_binary(), directory, tls)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def _run_as_me() -> str:
    """mosquitto started as root drops to user `mosquitto`, who cannot write here: stay us."""
    if sys.platform == "win32":
        return ""  # no user to drop to
    import pwd

    return f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
