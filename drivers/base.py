"""The driver contract: validated at construction, `run(ctx)` owns all I/O and reconnects."""

from __future__ import annotations

import concurrent.futures
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol, runtime_checkable

from agent.events import Event


class DriverContext(Protocol):
    """What the runtime gives a driver."""

    @property
    def state_dir(self) -> Path:
        """The agent's state directory (quarantine and spool folders live under it)."""
        ...

    async def emit(self, event: Event) -> bool:
        """Journal `event` durably; returns (True if new) only after the commit."""
        ...


@runtime_checkable
class ThreadEmitter(Protocol):
    """A context that also journals from a driver's own threads without a hop through the loop."""

    def emit_from_thread(self, event: Event, timeout: float) -> bool:
        """`emit`, called off the loop: blocks until the commit (TimeoutError after `timeout`)."""
        ...


@runtime_checkable
class ThreadSubmitter(Protocol):
    """A context that journals from a driver's thread without waiting for the commit."""

    def submit_from_thread(self, event: Event) -> concurrent.futures.Future[list[bool]]:
        """Queue `event` for the next group commit; the future is answered after it
        (JournalClosedError at once if the journal is closed)."""
        ...


class Driver(ABC):
    """A device-facing source of events."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def run(self, ctx: DriverContext) -> None:
        """Produce events until cancelled; connect, reconnect and back off here."""

    def is_online(self) -> bool | None:
        """Whether the device link is up; None for a source without a link of its own."""
        return None

    def link_detail(self) -> str | None:
        """Where the device link points and, while it is down, why (for people); None: no link."""
        return None

    def stats(self) -> dict[str, int]:
        """Counters for metrics, under a bounded set of keys (reject reasons, taps)."""
        return {}
