"""One tap per tag presence: repeated reads within a sliding window are the same tap."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class Debouncer:
    """`is_new_tap(tag)` is True unless `tag` was last read less than `window` seconds ago."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._last_seen: OrderedDict[str, float] = OrderedDict()  # oldest first

    def is_new_tap(self, tag: str) -> bool:
        """Record a read of `tag` now; True if it starts a new tap."""
        if self.window <= 0:
            return True
        now = self._clock()
        while self._last_seen:  # forget tags gone for longer than the window: bounded memory
            oldest, seen = next(iter(self._last_seen.items()))
            if now - seen <= self.window:
                break
            del self._last_seen[oldest]
        new = tag not in self._last_seen
        # Every read restarts the window: a tag lying on the reader stays one tap.
        self._last_seen[tag] = now
        self._last_seen.move_to_end(tag)
        return new
