"""Simulated station readers: TCP servers that play a script of taps in real reader formats."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Annotated, Literal

import structlog
from pydantic import Field, model_validator

from agent.config import PluginSection, Section
from drivers.rfid import rdm6300

log = structlog.get_logger(__name__)


class SimulatedReader(Section):
    """One reader: a TCP port the agent's `rfid_reader` source connects to (tcp://)."""

    name: str
    port: Annotated[int, Field(ge=1, le=65535)]
    # rdm6300: EM4100 frames; decimal: 10-digit lines; text: the tag as typed (for a `regex`
    # source, e.g. a use-station scanner that reads wristbands and scope labels)
    protocol: Literal["rdm6300", "decimal", "text"] = "rdm6300"


class ScriptedTap(Section):
    """Wait `after` seconds, then tap `tag` on `reader`."""

    reader: str
    tag: str  # hex (8 hex digits = EM4100 tag; an RDM6300 adds version byte 01) or a text code
    after: Annotated[float, Field(ge=0)] = 2.0


class RfidReadersConfig(PluginSection):
    """[simulators.<name>] type = "rfid_readers" """

    host: str = "127.0.0.1"
    readers: list[SimulatedReader]
    script: list[ScriptedTap] = []
    repeat: bool = False  # start the script again at its end

    @model_validator(mode="after")
    def _known_readers(self) -> RfidReadersConfig:
        names = {r.name for r in self.readers}
        for tap in self.script:
            protocol = next((r.protocol for r in self.readers if r.name == tap.reader), "text")
            if protocol != "text":
                try:
                    int(tap.tag, 16)
                except ValueError:
                    raise ValueError(
                        f"script: {tap.reader} ({protocol}) can only send hex tags, not {tap.tag!r}"
                    ) from None
        unknown = sorted({t.reader for t in self.script} - names)
        if unknown:
            raise ValueError(f"script: taps on readers not in `readers`: {', '.join(unknown)}")
        return self


def frame(tag: str, protocol: str) -> bytes:
    """The bytes a reader of `protocol` sends for `tag`."""
    if protocol == "rdm6300":
        id_hex = tag if len(tag) == 10 else f"01{tag}"
        return rdm6300.encode(bytes.fromhex(id_hex))
    if protocol == "decimal":
        return f"{int(tag, 16) & 0xFFFFFFFF:010d}\r\n".encode()
    return f"{tag}\r\n".encode()


class RfidReaders:
    """The simulator: one TCP server per reader, one task playing the script."""

    def __init__(self, name: str, config: RfidReadersConfig) -> None:
        self.name = name
        self.config = config
        self.played = 0
        self._writers: dict[str, asyncio.StreamWriter] = {}
        self._connected = asyncio.Condition()
        self._servers: list[asyncio.Server] = []
        self._script: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on every reader's port and start the script."""
        for reader in self.config.readers:
            server = await asyncio.start_server(
                functools.partial(self._accept, reader.name), self.config.host, reader.port
            )
            self._servers.append(server)
        if self.config.script:
            self._script = asyncio.create_task(self._play(), name=f"{self.name}-script")

    async def stop(self) -> None:
        """Stop the script, drop connections and close the servers."""
        if self._script is not None:
            self._script.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._script
        for writer in self._writers.values():
            writer.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    async def _accept(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async with self._connected:
            old = self._writers.get(name)
            if old is not None:
                old.close()
            self._writers[name] = writer
            self._connected.notify_all()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the agent disconnects; readers send nothing back
        async with self._connected:
            if self._writers.get(name) is writer:
                del self._writers[name]
        writer.close()

    def _has(self, reader: str) -> bool:
        return reader in self._writers

    async def _play(self) -> None:
        protocols = {r.name: r.protocol for r in self.config.readers}
        while True:
            for tap in self.config.script:
                await asyncio.sleep(tap.after)
                async with self._connected:  # a tap waits for its reader to be connected
                    await self._connected.wait_for(functools.partial(self._has, tap.reader))
                    writer = self._writers[tap.reader]
                try:
                    writer.write(frame(tap.tag, protocols[tap.reader]))
                    await writer.drain()
                except ConnectionError:
                    self._writers.pop(tap.reader, None)
                    continue
                self.played += 1
            if not self.config.repeat:
                log.info("simulator.script_done", simulator=self.name, taps=self.played)
                return


def build(name: str, config: RfidReadersConfig) -> RfidReaders:
    """Make the simulator from its validated config."""
    return RfidReaders(name, config)
