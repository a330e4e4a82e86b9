"""Fault injection for crash tests: `EDGE_AGENT_KILL_AT=<point>[:<n>]` kills the process (SIGKILL)
the n-th time (default 1st) it reaches `kill_point(<point>)`; unset, a kill point costs one test."""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("EDGE_AGENT_KILL_AT", "")
_POINT, _, _NTH = _SPEC.partition(":")
_lock = threading.Lock()
_reached = [0]


def kill_point(name: str) -> None:
    """Die here, at once and without cleanup, if the environment asks for this point."""
    if name != _POINT:
        return
    with _lock:
        _reached[0] += 1
        due = _reached[0] == int(_NTH or 1)
    if due:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))  # SIGKILL: POSIX only
