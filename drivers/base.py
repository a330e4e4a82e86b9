"""The driver contract: validated at construction, `run(ctx)` owns all I/O and reconnects."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

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


class Driver(ABC):
    """A device-facing source of events."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def run(self, ctx: DriverContext) -> None:
        """Produce events until cancelled; connect, reconnect and back off here."""
