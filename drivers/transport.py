"""Device byte streams from `serial://`, `tcp://` and `tcp-listen://` URLs, kept open by a Link.

A Link reconnects with capped exponential backoff and jitter, and logs once when the device goes
away and once when it is back.

* `serial:///dev/ttyUSB0?baud=9600&parity=N&bytesize=8&stopbits=1` (parity N, E, O, M, S;
  bytesize 5–8; stopbits 1, 1.5, 2; defaults as shown). `serial://COM3` on Windows, where the
  port is read by a worker thread (drivers/serial_thread.py), not by the event loop.
* `tcp://host:port` — we connect to the reader (TCP keepalive on, so a dead peer is noticed).
* `tcp-listen://0.0.0.0:port` — the reader connects to us. One reader per source: a new
  connection replaces the current one (a rebooted reader reconnects while its old connection
  may still look open to us), so the newest connection is always the one read.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import structlog

from agent.events import utcnow

log = structlog.get_logger(__name__)

READ_SIZE = 4096
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]

_PARITIES = {"N", "E", "O", "M", "S"}
_BYTESIZES = {5, 6, 7, 8}
_STOPBITS = {1.0, 1.5, 2.0}
_SERIAL_OPTIONS = {"baud", "parity", "bytesize", "stopbits"}
# Windows' event loops cannot watch a serial handle: threads read it there. The tests
# set it on Linux to run the Windows path against socat's pseudo-terminals.
SERIAL_THREADS = sys.platform == "win32"
# Where a user looks for the device's name.
_LIST_PORTS = (
    "Device Manager, Ports (COM & LPT)" if sys.platform == "win32" else "ls /dev/serial/by-id/"
)


@dataclass(frozen=True, slots=True)
class SerialEndpoint:
    """A serial port and its line settings."""

    device: str
    baudrate: int = 9600
    parity: str = "N"
    bytesize: int = 8
    stopbits: float = 1.0


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """A TCP server we connect to (`listen=False`) or a TCP port readers connect to."""

    host: str
    port: int
    listen: bool = False


Endpoint = SerialEndpoint | TcpEndpoint


def parse_url(url: str) -> Endpoint:
    """Parse a device URL; ValueError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme == "serial":
        return _parse_serial(parts.netloc + parts.path, parse_qs(parts.query, strict_parsing=False))
    if parts.scheme in {"tcp", "tcp-listen"}:
        if parts.query or parts.path not in {"", "/"}:
            raise ValueError(f"{parts.scheme}:// takes only host:port")
        try:
            port = parts.port
        except ValueError as err:
            raise ValueError(f"invalid port in {url!r}") from err
        if not parts.hostname or port is None:
            raise ValueError(
                f"{parts.scheme}:// needs host:port, e.g. {parts.scheme}://10.0.0.5:6000"
            )
        return TcpEndpoint(parts.hostname, port, listen=parts.scheme == "tcp-listen")
    raise ValueError("the URL must start with serial://, tcp:// or tcp-listen://")


def _parse_serial(device: str, query: dict[str, list[str]]) -> SerialEndpoint:
    if not device:
        raise ValueError("serial:// needs a device, e.g. serial:///dev/ttyUSB0?baud=9600")
    unknown = set(query) - _SERIAL_OPTIONS
    if unknown:
        known = ", ".join(sorted(_SERIAL_OPTIONS))
        raise ValueError(f"unknown serial option(s) {sorted(unknown)}; known: {known}")
    option = {key: values[-1] for key, values in query.items()}
    try:
        endpoint = SerialEndpoint(
            device,
            baudrate=int(option.get("baud", 9600)),
            parity=option.get("parity", "N").upper(),
            bytesize=int(option.get("bytesize", 8)),
            stopbits=float(option.get("stopbits", 1)),
        )
    except ValueError as err:
        raise ValueError(f"serial options must be numbers: {err}") from err
    if endpoint.baudrate <= 0:
        raise ValueError("baud must be positive")
    if endpoint.parity not in _PARITIES:
        raise ValueError(f"parity must be one of {sorted(_PARITIES)}")
    if endpoint.bytesize not in _BYTESIZES:
        raise ValueError("bytesize must be 5, 6, 7 or 8")
    if endpoint.stopbits not in _STOPBITS:
        raise ValueError("stopbits must be 1, 1.5 or 2")
    return endpoint


async def open_stream(endpoint: Endpoint) -> Stream:
    """Open a serial port or connect to a TCP server; OSError if the device is not there."""
    if isinstance(endpoint, SerialEndpoint):
        if SERIAL_THREADS:
            from drivers.serial_thread import open_serial_stream  # only serial sources need it

            return await open_serial_stream(
                endpoint.device,
                baudrate=endpoint.baudrate,
                parity=endpoint.parity,
                bytesize=endpoint.bytesize,
                stopbits=endpoint.stopbits,
            )
        import serial_asyncio_fast  # POSIX only

        return await serial_asyncio_fast.open_serial_connection(
            url=endpoint.device,
            baudrate=endpoint.baudrate,
            parity=endpoint.parity,
            bytesize=endpoint.bytesize,
            stopbits=endpoint.stopbits,
        )
    if endpoint.listen:
        raise ValueError("tcp-listen:// is served by Link, not opened")
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    _keepalive(writer)
    return reader, writer


def why_not_open(endpoint: Endpoint, err: OSError) -> str:
    """Why a device could not be opened, said with what fixes it (the log, the devices page)."""
    code = err.errno
    if isinstance(endpoint, SerialEndpoint):
        device = endpoint.device
        if code == errno.ENOENT:
            return f"no device {device}: is the reader plugged in? ({_LIST_PORTS})"
        if code in {errno.EACCES, errno.EPERM} and sys.platform == "win32":
            return f"{device} is busy: another program has it open (a terminal, the vendor's tool)"
        if code in {errno.EACCES, errno.EPERM}:
            return (
                f"permission denied on {device}: the service user must be in its group (dialout:"
                " SupplementaryGroups=dialout in the unit, usermod -aG dialout edge-agent)"
            )
        if code == errno.EBUSY:
            return f"{device} is busy: another program has it open (fuser {device})"
        return f"{device}: {err}"
    where = f"{endpoint.host}:{endpoint.port}"
    if code == errno.ECONNREFUSED:
        return f"{where} refused the connection: nothing listens there (device off, wrong port?)"
    if code in {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return f"{where} cannot be reached: check the address and the network"
    if isinstance(err, TimeoutError) or code == errno.ETIMEDOUT:
        return f"no answer from {where}: the device is off, or a firewall drops the traffic"
    if isinstance(err, socket.gaierror):
        return f"{endpoint.host} is not a name this machine can resolve"
    return f"{where}: {err}"


def _keepalive(writer: asyncio.StreamWriter) -> None:
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # A reader whose cable is pulled never sends FIN: probe after 30 s idle, give up after ~60 s.
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: uniform(½, 1) × min(maximum, initial × 2^(n-1))."""

    initial: float = 1.0
    maximum: float = 30.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the `attempts`-th failure in a row."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(max(attempts - 1, 0), 64))
        # Half the delay is kept: a fleet of readers back from a power cut spreads out, yet
        # no attempt follows the last one immediately.
        return ceiling * rng.uniform(0.5, 1.0)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the peer is gone already; closed is what we wanted


DataHandler = Callable[[bytes], Awaitable[None]]


class Link:
    """Keeps one device stream open; `run(on_data)` hands every chunk over until cancelled.

    `on_data` is awaited before the next read, so a slow consumer slows the reader down.
    State for status pages: `online`, `changed_at`, `last_data_at`, `last_error`, `failures`
    (failed attempts or useless sessions in a row), `address` (tcp-listen); `wait_until`
    awaits a change of them.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        source: str,
        url: str,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.source = source
        self.url = url
        self.backoff = backoff or Backoff()
        self.online = False
        self.changed_at: datetime | None = None
        self.last_data_at: datetime | None = None
        self.address: tuple[str, int] | None = None
        self.last_error: str | None = None
        self.failures = 0
        self._changed = asyncio.Event()
        self._rng = rng or random.Random()
        self._offline_logged = False
        self._writer: asyncio.StreamWriter | None = None
        self._incoming: asyncio.Queue[Stream] = asyncio.Queue()

    async def run(self, on_data: DataHandler, on_connect: Callable[[], None] | None = None) -> None:
        """Deliver data until cancelled; `on_connect` runs before each new connection's data."""
        try:
            if isinstance(self.endpoint, TcpEndpoint) and self.endpoint.listen:
                await self._serve(self.endpoint, on_data, on_connect)
            else:
                await self._connect_loop(self.endpoint, on_data, on_connect)
        finally:
            if self._writer is not None:
                await _close(self._writer)
            while not self._incoming.empty():
                await _close(self._incoming.get_nowait()[1])
            self._writer = None
            self.online = False
            self._notify()

    def detail(self) -> str:
        """The URL, and while offline why ("not connected yet" before the first attempt ends)."""
        if self.online:
            return self.url
        return f"{self.url}: {self.last_error or 'not connected yet'}"

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, re-checking it after every state change."""
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def write(self, data: bytes) -> bool:
        """Send `data` on the current connection; False if there is none or it failed."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        try:
            writer.write(data)
            await writer.drain()
        except OSError:
            return False
        return True

    async def _connect_loop(
        self, endpoint: Endpoint, on_data: DataHandler, on_connect: Callable[[], None] | None
    ) -> None:
        while True:
            try:
                reader, writer = await open_stream(endpoint)
            except OSError as err:
                self._went_offline(f"cannot open: {why_not_open(endpoint, err)}")
                await asyncio.sleep(self.backoff.delay(self.failures, self._rng))
                continue
            started = time.monotonic()
            healthy, reason = await self._session(reader, writer, on_data, on_connect)
            # Only a useful session resets the backoff: connect-then-drop loops back off too.
            if healthy or time.monotonic() - started >= self.backoff.maximum:
                self.failures = 0
            self._went_offline(reason)
            await asyncio.sleep(self.backoff.delay(self.failures, self._rng))

    async def _serve(
        self, endpoint: TcpEndpoint, on_data: DataHandler, on_connect: Callable[[], None] | None
    ) -> None:
        while True:
            try:
                server = await asyncio.start_server(self._accepted, endpoint.host, endpoint.port)
                break
            except OSError as err:
                self._went_offline(f"cannot listen: {err}")
                await asyncio.sleep(self.backoff.delay(self.failures, self._rng))
        async with server:
            self.address = server.sockets[0].getsockname()[:2]
            self.failures = 0
            self._notify()
            log.info("transport.listening", source=self.source, url=self.url, port=self.address[1])
            while True:
                reader, writer = await self._incoming.get()
                healthy, reason = await self._session(reader, writer, on_data, on_connect)
                if healthy:
                    self.failures = 0
                if self._incoming.empty():
                    self._went_offline(reason)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _keepalive(writer)
        while not self._incoming.empty():  # only the newest waiting connection is kept
            self._incoming.get_nowait()[1].close()
        self._incoming.put_nowait((reader, writer))
        if self._writer is not None:
            log.info("transport.replaced", source=self.source, url=self.url)
            # Closing ends the current session after the chunk it is handling; never cancel it.
            self._writer.close()

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_data: DataHandler,
        on_connect: Callable[[], None] | None,
    ) -> tuple[bool, str]:
        """Pump one connection until it ends; return (data was received, why it ended)."""
        self._writer = writer
        self._came_online()
        if on_connect is not None:
            on_connect()
        received = False
        reason = "closed by the device"
        try:
            while True:
                try:
                    data = await reader.read(READ_SIZE)
                except OSError as err:
                    reason = f"connection lost: {err}"
                    break
                if not data:
                    break
                received = True
                self.last_data_at = utcnow()
                # Outside the OSError handler: a failing consumer (the journal) must crash
                # the driver, never pass for a lost connection and drop the tap silently.
                await on_data(data)
        finally:
            self._writer = None
            await _close(writer)
        return received, reason

    def _came_online(self) -> None:
        if not self.online:
            log.info("transport.online", source=self.source, url=self.url)
        self.online = True
        self.changed_at = utcnow()
        self.last_error = None
        self._offline_logged = False
        self._notify()

    def _went_offline(self, reason: str) -> None:
        """Record a lost connection or failed attempt; only the first of a run is a warning."""
        if self.online or not self._offline_logged:
            log.warning("transport.offline", source=self.source, url=self.url, reason=reason)
            self.changed_at = utcnow()
        else:
            log.debug("transport.retry", source=self.source, url=self.url, reason=reason)
        self.online = False
        self.failures += 1
        self.last_error = reason
        self._offline_logged = True
        self._notify()
