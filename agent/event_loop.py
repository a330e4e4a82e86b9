"""The event loop the agent runs on, and how a stop signal reaches it, on Linux and Windows."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from functools import partial


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the agent runs on: on Windows a selector loop, since the MQTT client (aiomqtt
    over paho) waits on its socket with add_reader, which the default proactor loop lacks."""
    if sys.platform == "win32":
        return asyncio.SelectorEventLoop()
    return asyncio.new_event_loop()


# SIGTERM (systemd, kill), SIGINT (Ctrl+C) and, on Windows, SIGBREAK (Ctrl+Break).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGBREAK") if hasattr(signal, name)
)
# Windows' select() is not interrupted by Ctrl+C: a plain signal handler runs only once the loop
# wakes up, so where one is installed the loop wakes this often (seconds).
SIGNAL_WAKE = 0.5


def handle_stop_signals(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None]
) -> Callable[[], None]:
    """Call `stop` on the loop when a stop signal arrives; return what puts the handlers back."""
    undo: list[Callable[[], object]] = []
    plain = False
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop)
            undo.append(partial(loop.remove_signal_handler, signum))
        except NotImplementedError:
            # Windows' loops have no add_signal_handler: a plain handler, which runs on the main
            # thread between bytecodes, hands the stop to the loop.
            def handler(received: int, frame: object) -> None:
                loop.call_soon_threadsafe(stop)

            with contextlib.suppress(ValueError):  # not the main thread: nothing to install
                previous = signal.signal(signum, handler)
                undo.append(partial(signal.signal, signum, previous or signal.SIG_DFL))
                plain = True
        except RuntimeError:
            # Off the main thread (the Windows service): the service control manager stops it.
            continue
    if plain:
        undo.append(_Waker(loop).cancel)

    def restore() -> None:
        for step in undo:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                step()

    return restore


class _Waker:
    """Wakes `loop` every SIGNAL_WAKE seconds until cancelled, so a plain handler gets to run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle = loop.call_later(SIGNAL_WAKE, self._tick)

    def _tick(self) -> None:
        self._handle = self._loop.call_later(SIGNAL_WAKE, self._tick)

    def cancel(self) -> None:
        """Stop waking the loop."""
        self._handle.cancel()
