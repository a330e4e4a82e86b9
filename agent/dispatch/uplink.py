"""The uplink contract, beside the outcomes it returns: open, send one message, close. Never sleeps,
retries or buffers."""

from __future__ import annotations

from abc import ABC, abstractmethod

from agent.dispatch.outcomes import Outcome
from agent.journal.outbox import OutboxMessage


class Uplink(ABC):
    """A connection to one cloud platform."""

    # Kinds whose dead letter must hold back the rest of its order key (the platform needs them
    # first), whatever `dead_letter_blocks_key` says for the others.
    dead_blocks_key: frozenset[str] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare sessions; must not fail because the platform is unreachable."""

    @abstractmethod
    async def send(self, message: OutboxMessage) -> Outcome:
        """Deliver one message and say what happened; never raise for platform or network errors."""

    async def authenticate(self) -> None:  # noqa: B027 - optional hook
        """Obtain fresh credentials; called single-flight by the dispatcher when a send said so."""

    async def healthcheck(self) -> bool:
        """Return whether the platform answers at all (no message is sent)."""
        return True

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and connections."""
