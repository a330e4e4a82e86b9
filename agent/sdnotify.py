"""systemd notifications (READY, WATCHDOG, STOPPING) over $NOTIFY_SOCKET, if set."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Sends sd_notify datagrams; does nothing when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # Linux abstract namespace
        self.address = address or None
        self._watchdog_usec = environ.get("WATCHDOG_USEC")
        self._watchdog_pid = environ.get("WATCHDOG_PID")

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if not asked for."""
        if not self._watchdog_usec or not self.address:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            return int(self._watchdog_usec) / 2_000_000
        except ValueError:
            return None

    def notify(self, *states: str) -> None:
        """Send `states` (e.g. "READY=1") as one datagram; never raises."""
        if self.address is None or sys.platform == "win32":  # no systemd, no AF_UNIX there
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(states).encode(), self.address)
        except OSError as err:
            log.warning("sdnotify.failed", error=str(err))
