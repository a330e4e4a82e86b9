"""Outbox records as the Zhejiang platform is sent them: the domain queues neutral records."""

from __future__ import annotations

from typing import Any

from agent.uplinks.kit.fieldmap import apply
from agent.uplinks.zhejiang_endoscope.codec import SCOPE_NAMES
from agent.uplinks.zhejiang_endoscope.config import SCOPE_REF_DEFAULTS
from agent.uplinks.zhejiang_endoscope.fields import DEFAULT_TIME_FORMAT
from agent.uplinks.zhejiang_endoscope.records import MAPS
from agent.vocabulary.records import REPROCESSING_RECORDS

FORMATS = {"DT": DEFAULT_TIME_FORMAT, "date": DEFAULT_TIME_FORMAT}


def as_sent(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The seed's fields of a queued record (a neutral one mapped; an old one as it is)."""
    if payload.get("vocabulary") != REPROCESSING_RECORDS:
        return payload
    if kind in SCOPE_REF_DEFAULTS and payload.get("scope_number"):  # the uplink's default choice
        payload = {**payload, "scope_ref": payload[SCOPE_NAMES[SCOPE_REF_DEFAULTS[kind]]]}
    fields, problems = apply(MAPS[kind], payload, FORMATS)
    assert problems == [], problems
    return fields
