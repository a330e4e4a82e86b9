"""pynetdicom 3.0's polling threads made to wait for work: shared by the SCP and the SCUs."""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from typing import Any

from pynetdicom import association, dul

from agent import reactor_pause

_ENDING = frozenset({"Sta1", "Sta13"})  # over, or awaiting the close after a release/reject/abort
DUL_IDLE = 0.05  # seconds: a bound for what might not wake the DUL thread; nothing known


class _Sleep:
    """pynetdicom's `time` module, whose `sleep` in a thread with `_edge_wait` waits for work."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or, in a thread that waits for its work (`_edge_wait`), wait for it."""
        wait = getattr(threading.current_thread(), "_edge_wait", None)
        if wait is None:
            time.sleep(seconds)
        else:
            wait(seconds)


class _NotifyingQueue(queue.Queue[Any]):
    """A queue that calls `notify` after each put."""

    def __init__(self, notify: Any) -> None:
        super().__init__()
        self.notify = notify

    def _put(self, item: Any) -> None:
        super()._put(item)
        self.notify()


class Wakeups:
    """Makes an acceptor's two pynetdicom threads sleep until their input arrives.

    pynetdicom 3.0 polls: the DUL thread sleeps 1 ms whenever its socket and its send queue are
    empty, the association thread sleeps 1 ms before each look at its message queue. With a
    synchronous peer each image waits on both. Here the DUL thread waits in select() on its
    socket and a pipe written when a primitive is queued for sending or the thread is told to
    end, and the association thread on an Event set when a DIMSE message is queued.

    The DUL thread's wait is DUL_IDLE (or until its ARTIM timer is due), not 1 ms, until the
    association is ending (Sta13) or over (Sta1): everything it acts on wakes it, and a
    thousand wake-ups a second each take the GIL from the thread doing the work (a C-MOVE's
    sub-operations ran at half speed). The association thread keeps pynetdicom's 1 ms: it also
    watches flags (release, abort) that nothing signals.
    """

    def __init__(self, sock: socket.socket, dul: Any = None) -> None:
        self.sock = sock
        self.dul = dul
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.message = threading.Event()

    @classmethod
    def install(cls, assoc: Any, sock: socket.socket) -> None:
        """Before the association starts: replace its queues and mark its threads."""
        wakeups = cls(sock, assoc.dul)
        assoc.dul.to_provider_queue = _NotifyingQueue(wakeups.wake)
        kill_dul = assoc.dul.kill_dul

        def kill_and_wake() -> None:
            kill_dul()
            wakeups.wake()

        assoc.dul.kill_dul = kill_and_wake
        assoc.dimse.msg_queue = _NotifyingQueue(wakeups.message.set)
        assoc.dul._run_loop_delay = 0.001
        assoc.dul._edge_wait = wakeups
        assoc._edge_wait = wakeups.wait_message

    def wake(self) -> None:
        """Wake the DUL thread (a primitive is queued for sending)."""
        try:
            self.writer.send(b"\0")
        except OSError:  # full (it is awake anyway) or closed (the association is over)
            pass

    def __call__(self, seconds: float) -> None:
        """The DUL thread's idle sleep: until the peer sends, a primitive is queued, the thread
        is told to end, or DUL_IDLE (at most until its ARTIM timer is due)."""
        wait = DUL_IDLE
        if self.dul is not None:
            if self.dul.state_machine.current_state in _ENDING:
                wait = seconds  # ending: pynetdicom sets flags and polls for the end
            else:
                wait = max(0.0, min(wait, float(self.dul.artim_timer.remaining)))
        try:
            ready, _, _ = select.select([self.sock, self.reader], [], [], wait)
            if self.reader in ready:
                self.reader.recv(4096)
        except (OSError, ValueError):  # the socket is closed: pynetdicom notices on its own
            time.sleep(seconds)

    def wait_message(self, seconds: float) -> None:
        """The association thread's sleep: until a DIMSE message is queued, or timeout."""
        self.message.wait(seconds)
        self.message.clear()

    def close(self) -> None:
        """Close the pipe (idempotent)."""
        self.reader.close()
        self.writer.close()


def use_wakeups() -> None:
    """Route pynetdicom's DUL and association sleeps through `_Sleep`, and give every
    association from now on `reactor_pause`'s checkpoint (process-wide, idempotent): call it
    before making any pynetdicom association."""
    for module in (dul, association):
        setattr(module, "time", _Sleep())  # noqa: B010
    reactor_pause.install()  # a DIMSE response reaches the thread that sent its request


def wake_on_work(assoc: Any) -> None:
    """At EVT_CONN_OPEN: no Nagle delay on the association's TCP socket, and threads that wake
    on work (`use_wakeups` must have run). Nothing is queued yet then, so the swap is safe."""
    sock = assoc.dul.socket.socket
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Wakeups.install(assoc, sock)


def close_wakeups(assoc: Any) -> None:
    """At EVT_CONN_CLOSE: release what `wake_on_work` opened."""
    wakeups = getattr(assoc.dul, "_edge_wait", None)
    if isinstance(wakeups, Wakeups):
        wakeups.close()
