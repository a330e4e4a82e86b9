"""pynetdicom 3.0's reactor pause made safe: a DIMSE reply goes to the thread that asked for it.

Installed process-wide by `agent.dicom_wakeups.use_wakeups`, which everything that makes a
pynetdicom association calls first (the SCP, the simulators' SCPs and SCUs): an agent that
sends with pynetdicom's SCU without running the DICOM SCP is covered too.

Before a `send_*` from another thread (the C-MOVE handler storing over the move's association,
an uplink's C-STORE), pynetdicom clears the association's `_reactor_checkpoint` Event and spins
until the reactor thread says `_is_paused`. The reactor sets `_is_paused = True`, waits on the
Event, then sets `_is_paused = False` and takes a DIMSE message off the queue. Two windows let
the reactor run while the sender believes it parked:

* `Event.wait` returns True to a notified waiter even when the Event was cleared again before
  the waiter got the GIL: after one C-STORE the sender sets the Event, then clears it for the
  next one while the reactor is still waking up, and finds `_is_paused` still True;
* between its `wait()` returning and `_is_paused = False`, the reactor looks parked.

The reactor then takes the peer's C-STORE response ("Received unexpected C-STORE service
message"), the sender waits the whole DIMSE timeout for it and aborts: the move's remaining
sub-operations fail. Seen under CPU load, when the reactor thread waits long for the GIL.

`ReactorCheckpoint` replaces that Event: its `wait` returns only while it is set, and its
`clear` from any thread but the reactor returns only once the reactor is parked in `wait` (or
its association is over), so the sender's own spin that follows is true. The reactor's 1 ms
idle sleep (through `agent.dicom_wakeups._Sleep`) ends as soon as a sender clears: a C-MOVE
sub-operation does not wait for it.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from pynetdicom.association import Association

_RECHECK = 0.05  # seconds between looks at a reactor that may have ended without parking


class ReactorCheckpoint:
    """The `_reactor_checkpoint` of `assoc`: an Event whose clear waits for the reactor to park."""

    def __init__(self, assoc: threading.Thread) -> None:
        self._assoc = assoc
        self._cond = threading.Condition(threading.Lock())
        self._flag = True  # pynetdicom starts with the reactor free to run
        self._parked = False
        self._clears = 0  # how many times a pause was asked for

    def is_set(self) -> bool:
        """True while the reactor may run."""
        return self._flag

    def set(self) -> None:
        """Let the reactor run."""
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Stop the reactor; from another thread, return only once it is parked (or ended)."""
        with self._cond:
            self._flag = False
            self._clears += 1
            self._cond.notify_all()  # ends the reactor's idle sleep
            if threading.current_thread() is self._assoc:
                return  # the reactor itself, sending from a handler: it is not in its loop
            while not self._parked and self._running():
                self._cond.wait(_RECHECK)

    def wait(self, timeout: float | None = None) -> bool:
        """In the reactor: park until set (a timeout, unused by pynetdicom, ends it too)."""
        with self._cond:
            self._parked = True
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._flag, timeout)
            finally:
                self._parked = False

    def idle(self, seconds: float) -> None:
        """The reactor's sleep between looks: `seconds`, or until a sender wants it parked."""
        with self._cond:
            asked = self._clears
            self._cond.wait_for(lambda: self._clears != asked, seconds)

    def _running(self) -> bool:
        return self._assoc.is_alive() and not getattr(self._assoc, "_kill", False)


def install() -> None:
    """Give every pynetdicom association made from now on a `ReactorCheckpoint` (process-wide)."""
    init = Association.__init__
    if getattr(init, "_edge_checkpoint", False):
        return

    @functools.wraps(init)
    def init_with_checkpoint(self: Association, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        checkpoint = ReactorCheckpoint(self)
        self._reactor_checkpoint = checkpoint  # type: ignore[assignment]
        # The reactor thread's sleeps (agent.dicom_wakeups._Sleep); an acceptor's Wakeups
        # replace it.
        self._edge_wait = checkpoint.idle  # type: ignore[attr-defined]

    init_with_checkpoint._edge_checkpoint = True  # type: ignore[attr-defined]
    Association.__init__ = init_with_checkpoint  # type: ignore[method-assign]
