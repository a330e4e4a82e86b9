"""A serial port as asyncio streams, read and written by two worker threads with plain pyserial.

Windows' event loops (proactor, selector) cannot wait on a serial handle; pyserial-asyncio-fast is
POSIX-only; pyserial-asyncio's Windows path polls the port every few milliseconds. A thread
blocked in `Serial.read` costs nothing while the reader is silent and hands each byte over at
once; `Serial.cancel_read` (CancelIoEx on Windows, a wake-up pipe on POSIX) ends it on close.
The same code runs on Linux, where the tests drive it against socat's pseudo-terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import queue
import threading
from typing import Any

import serial

READ_SIZE = 4096
HIGH_WATER = 64 * 1024  # bytes queued for the port before writers are paused (drain waits)
LOW_WATER = 16 * 1024
# A write the line cannot take this long (hardware flow control held by a dead device) ends the
# connection instead of holding the writer thread, and with it the close, for ever.
WRITE_TIMEOUT = 10.0


def open_port(
    device: str, baudrate: int, parity: str, bytesize: int, stopbits: float
) -> serial.Serial:
    """Open `device` (blocking); OSError with an errno where the OS gave one."""
    try:
        return serial.Serial(
            port=device,
            baudrate=baudrate,
            parity=parity,
            bytesize=bytesize,
            stopbits=stopbits,
            timeout=None,  # read blocks until a byte arrives or cancel_read
            write_timeout=WRITE_TIMEOUT,
        )
    except serial.SerialException as err:
        raise with_errno(err) from err


def with_errno(err: serial.SerialException) -> OSError:
    """pyserial on Windows puts the OS error only into its message ("PermissionError(13, ...")."""
    if err.errno is not None:
        return err
    text = str(err)
    for name, code in (("FileNotFoundError", errno.ENOENT), ("PermissionError", errno.EACCES)):
        if name in text:
            return OSError(code, text)
    return err


async def open_serial_stream(
    device: str, *, baudrate: int, parity: str, bytesize: int, stopbits: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open `device` in a worker thread and return its streams; OSError if it cannot be opened."""
    loop = asyncio.get_running_loop()
    port = await asyncio.to_thread(open_port, device, baudrate, parity, bytesize, stopbits)
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = ThreadedSerialTransport(loop, protocol, port)
    protocol.connection_made(transport)
    transport.start()
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class ThreadedSerialTransport(asyncio.Transport):
    """Bytes from a reader thread to `protocol` on the loop; `write` queues for a writer thread.

    The reader thread ends on close, on a read or write error, or when the device goes away;
    it then closes the port and calls `connection_lost` (with the error) once, on the loop.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, port: serial.Serial
    ) -> None:
        super().__init__(extra={"serial": port})
        self._loop = loop
        self._protocol = protocol
        self._port = port
        self._closing = False
        self._lost = False
        self._error: Exception | None = None
        self._can_read = threading.Event()
        self._can_read.set()
        self._writes: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffered = 0
        self._buffer_lock = threading.Lock()
        self._writing_paused = False
        name = f"serial {port.port}"
        self._reader = threading.Thread(target=self._read_loop, name=f"{name} reader", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"{name} writer", daemon=True)

    def start(self) -> None:
        """Start the threads (after `connection_made`)."""
        self._writer.start()
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            while not self._closing:
                self._can_read.wait()
                waiting = self._port.in_waiting
                data = self._port.read(max(1, min(waiting, READ_SIZE)))
                if data and not self._closing:
                    self._call(self._protocol.data_received, data)
        except (serial.SerialException, OSError) as err:  # unplugged, or the port went bad
            if not self._closing:
                self._error = err
        finally:
            self._writes.put(None)
            self._writer.join()
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
            self._call(self._connection_lost)

    def _write_loop(self) -> None:
        while (data := self._writes.get()) is not None:
            try:
                self._port.write(data)
            except (serial.SerialException, OSError) as err:
                self._error = self._error or err
                self._stop_reading()
                return
            with self._buffer_lock:
                self._buffered -= len(data)
                resume = self._writing_paused and self._buffered <= LOW_WATER
            if resume:
                self._call(self._resume_writing)

    def _call(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def _connection_lost(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._protocol.connection_lost(self._error)

    def _resume_writing(self) -> None:
        if self._writing_paused and self._buffered <= LOW_WATER and not self._lost:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _stop_reading(self) -> None:
        self._closing = True
        self._can_read.set()
        with contextlib.suppress(serial.SerialException, OSError, AttributeError):
            self._port.cancel_read()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data` for the port; pauses the protocol's writing above the high-water mark."""
        if self._closing or not data:
            return
        with self._buffer_lock:
            self._buffered += len(data)
            pause = not self._writing_paused and self._buffered > HIGH_WATER
            self._writing_paused = self._writing_paused or pause
        self._writes.put(bytes(data))
        if pause:
            self._protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet written to the port."""
        return self._buffered

    def can_write_eof(self) -> bool:
        """A serial line has no end of file."""
        return False

    def is_closing(self) -> bool:
        """True once closed or lost."""
        return self._closing

    def close(self) -> None:
        """Stop reading; `connection_lost(None)` follows once the port is closed."""
        self._stop_reading()

    def abort(self) -> None:
        """As `close`: what was queued may not be written."""
        self._stop_reading()

    def pause_reading(self) -> None:
        """The reader thread waits before its next read."""
        self._can_read.clear()

    def resume_reading(self) -> None:
        """The reader thread reads again."""
        self._can_read.set()

    def is_reading(self) -> bool:
        """True unless paused or closing."""
        return self._can_read.is_set() and not self._closing
