"""Domain handler that forwards raw events of chosen kinds to an uplink, per source in order."""

from __future__ import annotations

from dataclasses import dataclass

from agent.events import Event
from agent.journal.transaction import Transaction


@dataclass(frozen=True, slots=True)
class ForwardEvents:
    """Queue one message per matching event; ordered per event source."""

    name: str
    uplink: str
    kinds: tuple[str, ...]

    def handle(self, tx: Transaction, event: Event) -> None:
        """Queue the event as a message for `uplink`, deduplicated by the event id."""
        tx.enqueue(
            uplink=self.uplink,
            kind=event.kind,
            order_key=event.source,
            dedupe_key=event.id,
            payload={
                "id": event.id,
                "kind": event.kind,
                "source": event.source,
                "occurred_at": event.occurred_at.isoformat(),
                "payload": event.payload,
            },
        )
