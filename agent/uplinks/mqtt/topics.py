"""Outbox message to MQTT publication: topic, compact JSON payload, retain flag (sans I/O)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from agent.errors import AgentError
from agent.journal.outbox import OutboxMessage

SUFFIX_KEY = "topic_suffix"
MAX_TOPIC_BYTES = 65535  # MQTT: a topic name is a UTF-8 string with a 16-bit length


class UnpublishableError(AgentError):
    """The message cannot become an MQTT publication (a bad topic suffix or kind)."""


@dataclass(frozen=True, slots=True)
class Publication:
    """What goes on the wire for one message."""

    topic: str
    payload: bytes
    retain: bool


def _levels_problem(text: str) -> str | None:
    """Why `text` cannot be (part of) a topic name, or None; '/' separates levels."""
    if any(c in text for c in "+#"):
        return "contains a wildcard (+ or #)"
    if "\0" in text:
        return "contains a NUL character"
    if "" in text.split("/"):
        return "has an empty level (leading, trailing or double /)"
    return None


def check_topic_prefix(value: str) -> str:
    """Accept a topic prefix such as `edge-agent/ward3`; raise ValueError saying why not."""
    problem = "is empty" if not value else _levels_problem(value)
    if problem is None and value.startswith("$"):
        problem = "starts with $ (reserved for the broker's own topics such as $SYS)"
    if problem is not None:
        raise ValueError(f"topic prefix {value!r} {problem}")
    return value


def _suffix(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a scope number may come as an integer
    if not isinstance(value, str):
        raise UnpublishableError(f"{SUFFIX_KEY} must be a string, not {type(value).__name__}")
    problem = "is empty" if not value else _levels_problem(value)
    if problem is not None:
        raise UnpublishableError(f"{SUFFIX_KEY} {value!r} {problem}")
    return value


def encode(message: OutboxMessage, prefix: str, retain_kinds: Collection[str]) -> Publication:
    """Build the publication: `<prefix>/<kind with . as />[/<topic_suffix>]`, key removed."""
    kind_path = message.kind.replace(".", "/")
    problem = "is empty" if not message.kind else _levels_problem(kind_path)
    if problem is not None:
        raise UnpublishableError(f"kind {message.kind!r} {problem}")
    payload = dict(message.payload)
    topic = f"{prefix}/{kind_path}"
    if SUFFIX_KEY in payload:
        topic = f"{topic}/{_suffix(payload.pop(SUFFIX_KEY))}"
    try:
        topic_bytes = len(topic.encode())
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as err:  # a lone surrogate, which JSON escapes can carry
        raise UnpublishableError(f"not encodable as UTF-8: {err.reason}") from err
    if topic_bytes > MAX_TOPIC_BYTES:
        raise UnpublishableError(f"topic is longer than {MAX_TOPIC_BYTES} bytes")
    return Publication(topic, body, message.kind in retain_kinds)
