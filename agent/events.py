"""The Event every driver emits and the journal stores."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUIDv7 (RFC 9562): 48-bit ms timestamp, then 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


_LAST_EPOCH = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def iso_time(epoch: float | None) -> str | None:
    """Unix seconds as programs read times from us: ISO 8601 in UTC with its offset."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(min(max(epoch, 0.0), _LAST_EPOCH), UTC)  # "never": the end
    return moment.isoformat(timespec="milliseconds")


def with_iso_times(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`row` with the Unix-seconds values at `keys` as ISO 8601 (for JSON output)."""
    return {**row, **{key: iso_time(row[key]) for key in keys if key in row}}


@dataclass(frozen=True, slots=True)
class Event:
    """Something a device or hospital system told us; `id` is its idempotency key."""

    kind: str
    source: str
    payload: dict[str, Any]
    occurred_at: datetime = field(default_factory=utcnow)
    received_at: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=lambda: str(uuid7()))
