"""The local SQLite journal: raw events, domain state and the outbox, committed together."""

from __future__ import annotations

from agent.journal.database import open_database
from agent.journal.writer import Handler, Journal, Transaction

__all__ = ["Handler", "Journal", "Transaction", "open_database"]
