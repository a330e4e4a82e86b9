"""The local SQLite journal: raw events, domain state and the outbox, committed together."""

from __future__ import annotations

from agent.journal.database import open_database
from agent.journal.transaction import Handler, Transaction
from agent.journal.writer import Journal

__all__ = ["Handler", "Journal", "Transaction", "open_database"]
