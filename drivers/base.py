"""The driver contract: validated at construction, `run(ctx)` owns all I/O and reconnects."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from agent.events import Event


class DriverContext(Protocol):
    """What the runtime gives a driver."""

    async def emit(self, event: Event) -> bool:
        """Journal `event` durably; returns (True if new) only after the commit."""
        ...


class Driver(ABC):
    """A device-facing source of events."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def run(self, ctx: DriverContext) -> None:
        """Produce events until cancelled; connect, reconnect and back off here."""
