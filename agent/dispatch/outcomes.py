"""Typed results of one delivery attempt; the dispatcher, not the uplink, acts on them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivered:
    """The platform accepted the message; `response` is its answer, kept verbatim."""

    response: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: try again after `after` seconds, or after the backoff if None.

    `reauthenticate` says the credentials expired: the dispatcher refreshes them once
    (single-flight) and retries at once. `deferred` says the platform is fine and only this
    message must wait (e.g. for a record it depends on): the circuit breaker is not charged.
    `unreadable` says the platform answered something the uplink cannot read (an HTML page with
    200, truncated JSON): after the uplink's `unreadable_answer_attempts` such answers in a row
    the dispatcher makes the message a dead letter with an alert instead of retrying forever.
    """

    reason: str
    after: float | None = None
    response: str | None = None
    reauthenticate: bool = False
    deferred: bool = False
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """The platform refused the message for good: it becomes a dead letter with this reason.

    `alert` names an alert code when the refusal is itself something a person must see (a
    compliance event); the dispatcher raises it in the same transaction as the dead letter.
    """

    reason: str
    response: str | None = None
    alert: str | None = None


Outcome = Delivered | Retry | Reject
