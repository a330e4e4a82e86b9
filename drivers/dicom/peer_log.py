"""Log lines about hostile or broken peers: escaped, bounded, and not one per repetition."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable

import structlog

from agent.logs import peer_text

log = structlog.get_logger(__name__)

GATE_THREAD = "dicom-gate"


class OncePer:
    """Which repetitions of an event get a line: the first per key, then one per `window`.

    Keys are bounded (the oldest is forgotten), so a peer inventing new AE titles or addresses
    costs a line each at most, never unbounded memory.
    """

    def __init__(
        self,
        window: float = 600.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, key: Hashable) -> int | None:
        """None: stay quiet; else log, and this many were left unlogged since the last line."""
        now = self.clock()
        with self._lock:
            seen = self._keys.get(key)
            if seen is not None and now - seen[0] < self.window:
                self._keys[key] = (seen[0], seen[1] + 1)
                return None
            self._keys[key] = (now, 0)
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return 0 if seen is None else seen[1]


class LibraryRecords(logging.Handler):
    """pynetdicom's and pydicom's records as one escaped warning line each, no traceback.

    A garbage PDU makes pynetdicom log several error records with a traceback each; a peer
    sending them in a loop would bury the log. Each message (call site) gets a line at most once
    every ten minutes, with the count of those left out.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lines = OncePer()

    def emit(self, record: logging.LogRecord) -> None:
        """Log `record` as `dicom.library_message` unless the same message was just logged."""
        if threading.current_thread().name.startswith(GATE_THREAD):
            return  # the gate checks requests with pynetdicom's decoder and logs its own line
        # Keyed by the call site, not the text: pynetdicom's messages quote the peer's bytes,
        # so a fuzzing peer would otherwise get a line for every variation.
        repeated = self._lines.first((record.name, record.lineno))
        if repeated is None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not escape into pynetdicom's thread
            message = str(record.msg)
        log.warning(
            "dicom.library_message",
            library=record.name,
            severity=record.levelname.lower(),
            message=peer_text(message, 160),
            repeated=repeated or None,
        )


def route_library_records() -> None:
    """pynetdicom's and pydicom's records through `LibraryRecords`, not raw (process-wide)."""
    for name in ("pynetdicom", "pydicom"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, LibraryRecords) for h in logger.handlers):
            logger.addHandler(LibraryRecords())
        logger.propagate = False
    # pydicom also hands its logged warnings (peer-made UIDs among them) to `warnings`, which
    # would print them raw on stderr: the logged copy above is the one kept.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
