"""The connection gate in front of both acceptors: limits, ARTIM, and a whole request first.

One thread accepts every TCP connection. A connection over the per-address or total limit is
closed at once; the others wait, without a thread, until their A-ASSOCIATE-RQ PDU has arrived
whole (the socket's SO_RCVLOWAT makes the selector wake only then; Windows has no SO_RCVLOWAT:
there a partial request is looked at again every `RECHECK` seconds) or `artim_timeout` passes.
Only then is the still-unread request handed to a worker thread (the lean acceptor or
pynetdicom). A first PDU that is not an A-ASSOCIATE-RQ, or a request that does not decode, gets
an A-ABORT; another protocol version or an invalid AE title an A-ASSOCIATE-RJ; each refusal one
rate-limited warning line.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from pynetdicom.pdu import A_ASSOCIATE_RQ

from agent.logs import peer_text
from drivers.dicom import wire
from drivers.dicom.peer_log import OncePer

log = structlog.get_logger(__name__)

# PS3.8 §9.3.2: protocol version, reserved, called AE, calling AE, reserved: 68 bytes.
REQUEST_FIXED = 68
MAX_REQUEST = 262_144  # the largest A-ASSOCIATE-RQ taken; real ones are a few KiB
_HEADER = struct.Struct(">BxLH")  # PDU type, length, protocol version
# A-ASSOCIATE-RJ, rejected-permanent: by the service provider (ACSE), protocol version not
# supported; by the service user, calling / called AE title not recognised.
_RJ_VERSION = bytes([wire.A_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, 1, 2, 2])
_RJ_CALLING = bytes([wire.A_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, 1, 1, 3])
_RJ_CALLED = bytes([wire.A_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, 1, 1, 7])
_ALL = "*"  # the episode key of the total limit
_ABORT_NOT_RQ = wire.abort(wire.ABORT_UNEXPECTED_PDU)
_ABORT_MALFORMED = wire.abort(wire.ABORT_INVALID_PARAMETER)
# Linux honours SO_RCVLOWAT in poll/epoll for TCP; Windows refuses the option. Without it a
# level-triggered selector would spin on a partial request: it is set aside and peeked again.
LOW_WATER = sys.platform != "win32"
RECHECK = 0.02  # seconds between looks at a partial request where there is no LOW_WATER


@dataclass(frozen=True, slots=True)
class GateLimits:
    """Connections allowed per source address and in total, and the ARTIM timeout (seconds)."""

    per_address: int
    total: int
    artim_timeout: float


@dataclass(slots=True)
class _Waiting:
    """A connection whose A-ASSOCIATE-RQ has not yet arrived whole."""

    address: Any
    deadline: float
    need: int = 1  # bytes that make the socket readable (SO_RCVLOWAT)


class ConnectionGate:
    """Accepts on `listener` until `stop`; hands each complete request to `handover`."""

    def __init__(
        self,
        source: str,
        listener: socket.socket,
        limits: GateLimits,
        handover: Callable[[socket.socket, Any], None],
    ) -> None:
        self.source = source
        self.listener = listener
        self.limits = limits
        self.handover = handover
        self.refused: Counter[str] = Counter()  # connections refused, by reason
        self.handed_over = 0
        self.closed_before_request = 0
        self._waiting: dict[socket.socket, _Waiting] = {}  # in arrival order: deadline order
        self._set_aside: dict[socket.socket, float] = {}  # partial request: look again at
        self._handed: list[tuple[socket.socket, str]] = []
        self._open: Counter[str] = Counter()  # waiting and handed-over connections by address
        self._episodes: dict[str, int] = {}  # address (or _ALL) → refused since the first line
        self._refusal_lines = OncePer()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    @property
    def open_connections(self) -> int:
        """Connections waiting here or being served now."""
        handed = self._handed
        return len(self._waiting) + sum(1 for sock, _ in handed if sock.fileno() != -1)

    @property
    def waiting(self) -> int:
        """Connections waiting for their A-ASSOCIATE-RQ."""
        return len(self._waiting)

    def run(self) -> None:
        """Accept and examine connections until `stop` (the gate's own thread)."""
        self.listener.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                try:
                    self._turn(selector)
                except Exception:  # the thread's boundary: a bug must not close the port
                    log.exception("dicom.gate_failed", source=self.source)
                    time.sleep(0.1)  # and must not spin if it repeats
        finally:
            for sock in list(self._waiting):
                self._drop(selector, sock)
            selector.close()
            self._stopped.set()

    def stop(self) -> None:
        """End `run` and close the connections still waiting (idempotent)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        self._stopped.wait()
        self._wake_reader.close()
        self._wake_writer.close()

    def _turn(self, selector: selectors.BaseSelector) -> None:
        self._watch_again(selector)
        for key, _ in selector.select(self._timeout()):
            if key.fileobj is self.listener:
                self._accept_all(selector)
            elif key.fileobj is not self._wake_reader:
                assert isinstance(key.fileobj, socket.socket)
                self._examine(selector, key.fileobj)
        self._expire(selector)

    def _timeout(self) -> float | None:
        first = next(iter(self._waiting.values()), None)
        deadlines = [first.deadline] if first is not None else []
        deadlines.extend(self._set_aside.values())
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _watch_again(self, selector: selectors.BaseSelector) -> None:
        """Watch the set-aside partial requests whose pause is over (none where LOW_WATER)."""
        now = time.monotonic()
        for sock, due in list(self._set_aside.items()):
            if due <= now:
                del self._set_aside[sock]
                selector.register(sock, selectors.EVENT_READ)

    def _accept_all(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as err:  # out of descriptors: give the workers a moment to close some
                self._refused(_ALL, "accept_failed", error=err.strerror or type(err).__name__)
                time.sleep(0.1)
                return
            self._admit(selector, sock, address)

    def _admit(self, selector: selectors.BaseSelector, sock: socket.socket, address: Any) -> None:
        peer = str(address[0])
        self._prune()
        if sum(self._open.values()) >= self.limits.total:
            sock.close()
            self._refused(_ALL, "too_many_connections", limit=self.limits.total)
            return
        if self._open[peer] >= self.limits.per_address:
            sock.close()
            self._refused(peer, "too_many_from_address", limit=self.limits.per_address)
            return
        for key in (peer, _ALL):
            refused = self._episodes.pop(key, None)
            if refused is not None:
                log.info(
                    "dicom.connections_accepted_again",
                    source=self.source,
                    peer=key,
                    refused=refused,
                )
        self._open[peer] += 1
        sock.setblocking(False)
        self._waiting[sock] = _Waiting(address, time.monotonic() + self.limits.artim_timeout)
        selector.register(sock, selectors.EVENT_READ)

    def _examine(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        waiting = self._waiting[sock]
        try:
            data = sock.recv(6 + MAX_REQUEST, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and len(data) < waiting.need and not LOW_WATER:
            selector.unregister(sock)  # the rest is on its way: look again in RECHECK
            self._set_aside[sock] = time.monotonic() + RECHECK
            return
        if len(data) < waiting.need:
            # Readable below the low-water mark: the peer closed or reset before asking (a port
            # scan, a health check, a peer giving up): not worth a line.
            self.closed_before_request += 1
            self._drop(selector, sock)
            return
        if data[0] != wire.A_ASSOCIATE_RQ:
            self._reject(selector, sock, "not_an_association_request", _ABORT_NOT_RQ)
            return
        if len(data) < 6 + REQUEST_FIXED:
            waiting.need = _wake_at(sock, 6 + REQUEST_FIXED)
            return
        _, length, version = _HEADER.unpack_from(data)
        calling = peer_text(data[26:42].strip(b" \0"))
        if length < REQUEST_FIXED or length > MAX_REQUEST:
            self._reject(selector, sock, "malformed_request", _ABORT_MALFORMED, calling)
        elif version & 0x0001 == 0:
            self._reject(selector, sock, "protocol_version", _RJ_VERSION, calling)
        elif len(data) < 6 + length:
            waiting.need = _wake_at(sock, 6 + length)
        elif (refusal := _refusal(data[: 6 + length])) is not None:
            self._reject(selector, sock, refusal[0], refusal[1], calling)
        else:
            selector.unregister(sock)
            del self._waiting[sock]
            _wake_at(sock, 1)
            sock.setblocking(True)
            self._handed.append((sock, str(waiting.address[0])))
            self.handed_over += 1
            try:
                self.handover(sock, waiting.address)
            except RuntimeError as err:  # no thread could be started: the host is exhausted
                sock.close()
                self._refused(_ALL, "no_worker_thread", error=str(err))

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        while self._waiting:
            sock, waiting = next(iter(self._waiting.items()))
            if waiting.deadline > now:
                return
            # ARTIM expired in Sta2: close the transport (PS3.8 §9.2, AA-2); nothing to answer.
            self._refused(str(waiting.address[0]), "artim_timeout")
            self._drop(selector, sock)

    def _reject(
        self,
        selector: selectors.BaseSelector,
        sock: socket.socket,
        reason: str,
        answer: bytes,
        calling: str | None = None,
    ) -> None:
        with contextlib.suppress(OSError):
            sock.send(answer)  # a few bytes into an empty send buffer: never blocks
            # Closing with unread bytes would reset the connection, and the peer might lose
            # the answer: read what is there (it was peeked, so it is bounded) first.
            while sock.recv(65_536):
                pass
        self._refused(str(self._waiting[sock].address[0]), reason, calling_ae=calling)
        self._drop(selector, sock)

    def _refused(self, key: str, reason: str, **fields: Any) -> None:
        self.refused[reason] += 1
        fields = {name: value for name, value in fields.items() if value is not None}
        if reason.startswith("too_many"):
            if key in self._episodes:  # one line per episode, not one per connection
                self._episodes[key] += 1
                return
            if len(self._episodes) >= 1024:
                self._episodes.pop(next(iter(self._episodes)))
            self._episodes[key] = 1
            log.warning(
                "dicom.connection_refused", source=self.source, peer=key, reason=reason, **fields
            )
            return
        repeated = self._refusal_lines.first((key, reason))
        if repeated is not None:
            log.warning(
                "dicom.connection_refused",
                source=self.source,
                peer=key,
                reason=reason,
                repeated=repeated or None,
                **fields,
            )

    def _drop(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        waiting = self._waiting.pop(sock)
        self._set_aside.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        sock.close()
        self._release(str(waiting.address[0]))

    def _prune(self) -> None:
        """Forget handed-over connections whose worker has closed the socket."""
        live = []
        for sock, peer in self._handed:
            if sock.fileno() == -1:
                self._release(peer)
            else:
                live.append((sock, peer))
        self._handed = live

    def _release(self, peer: str) -> None:
        self._open[peer] -= 1
        if self._open[peer] <= 0:
            del self._open[peer]


def _refusal(raw: bytes) -> tuple[str, bytes] | None:
    """Why a complete A-ASSOCIATE-RQ PDU is refused here, and the answer; None: hand it on."""
    if not _valid_ae_title(raw[26:42]):
        return "calling_ae_invalid", _RJ_CALLING
    if not _valid_ae_title(raw[10:26]):
        return "called_ae_invalid", _RJ_CALLED
    try:  # what the acceptors will do with it; pynetdicom's own failure is several tracebacks
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(raw)
        pdu.to_primitive()
    except Exception:
        return "malformed_request", _ABORT_MALFORMED
    return None


def _valid_ae_title(value: bytes) -> bool:
    """PS3.5 AE: ASCII, no control characters or backslash, not all spaces."""
    return bool(value.strip(b" ")) and all(0x20 <= byte < 0x7F and byte != 0x5C for byte in value)


def _wake_at(sock: socket.socket, size: int) -> int:
    """Let the selector report `sock` readable only once `size` bytes (or EOF) are there."""
    # Where LOW_WATER holds (Linux), a half-sent request costs no wake-up until the rest, the
    # peer's close, or ARTIM; elsewhere `size` is only what _examine compares with.
    if LOW_WATER:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    return size
