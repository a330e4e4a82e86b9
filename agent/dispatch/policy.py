"""Retry backoff and the per-uplink circuit breaker: pure state, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, base * 2^(n-1)))."""

    base: float = 1.0
    cap: float = 300.0

    def ceiling(self, attempts: int) -> float:
        """Return the largest delay allowed after `attempts` failed attempts."""
        try:
            return min(self.cap, self.base * 2.0 ** max(attempts - 1, 0))
        except OverflowError:  # retrying forever: past ~1024 attempts 2**n is no float
            return self.cap

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Return the delay before the next attempt after `attempts` failed attempts."""
        return rng.uniform(0.0, self.ceiling(attempts))


class BreakerState(StrEnum):
    """Closed: send freely. Open: send nothing. Half-open: one probe decides."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Opens after `threshold` consecutive transient failures; probes after `open_seconds`."""

    def __init__(self, threshold: int, open_seconds: float) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    def allowance(self, now: float, wanted: int) -> int:
        """Return how many of `wanted` sends may start now (moving open to half-open when due)."""
        if self.state is BreakerState.OPEN and now >= self.reopen_at:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.CLOSED:
            return wanted
        if self.state is BreakerState.HALF_OPEN and not self._probing and wanted > 0:
            self._probing = True
            return 1
        return 0

    def unused(self, granted: int) -> None:
        """Give back an allowance nothing was sent with (a probe slot must not stay taken)."""
        if granted and self.state is BreakerState.HALF_OPEN:
            self._probing = False

    @property
    def reopen_at(self) -> float:
        """When an open breaker lets the next probe through."""
        return self.opened_at + self.open_seconds

    def success(self) -> bool:
        """Record a send the platform answered; True if this closed the breaker."""
        changed = self.state is not BreakerState.CLOSED
        self.state, self.failures, self._probing = BreakerState.CLOSED, 0, False
        return changed

    def failure(self, now: float) -> bool:
        """Record a transient failure; True if this opened the breaker."""
        self.failures += 1
        was_closed = self.state is BreakerState.CLOSED
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state, self.opened_at, self._probing = BreakerState.OPEN, now, False
            return was_closed
        return False
