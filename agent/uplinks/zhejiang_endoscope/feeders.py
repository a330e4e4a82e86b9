"""check-config for a domain feeding this uplink: every value its config puts into master data
and records (record field names, agent.vocabulary.records), checked against the seed's tables
before the agent starts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from agent.uplinks.kit.fields import is_empty
from agent.uplinks.kit.fields import validate as validate_table
from agent.uplinks.zhejiang_endoscope.codec import SCOPE_NAMES
from agent.uplinks.zhejiang_endoscope.config import SCOPE_REF_DEFAULTS, ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.fields import ENDPOINTS, checks
from agent.uplinks.zhejiang_endoscope.records import MAPS

PHOTO_FIELDS = ("imageUrl", "pic1")  # uploadDisinfectData, cleaningEffectTesting
PHOTO_BASE = "photo_base_url"  # not a record field: what the photo fields start with
SCOPE_SOURCES = ("scope_ref", *SCOPE_NAMES.values())
INSTITUTION = {"institution_code": "unique_code", "institution_credit_code": "credit_code"}


def check(uplink: Any, values: Iterable[tuple[str, str, object]]) -> list[str]:
    """Lines "key: reason" for each (config key, record field, value) a domain feeds into
    records that the seed's tables refuse, institution codes that differ from the uplink's, and
    a photo URL the platform cannot fetch."""
    if not isinstance(uplink, ZhejiangEndoscopeConfig):
        return []
    problems: list[str] = []
    for key, source, value in values:
        if source in INSTITUTION:
            mine = getattr(uplink, INSTITUTION[source])
            if value != mine:
                problems.append(
                    f"{key}: differs from the uplink's {INSTITUTION[source]}: configure it once"
                    " (remove [domains.*.institution]: the uplink's codes are sent)"
                )
        elif source == PHOTO_BASE:
            if not _fetchable(str(value)):
                shown = "empty" if not value else "not an absolute http(s) URL"
                problems.append(
                    f"{key}: {shown}: the platform cannot fetch the photos of"
                    f" {', '.join(PHOTO_FIELDS)} (a URL publishing <state_dir>/photos)"
                )
        else:
            if source in SCOPE_SOURCES:
                problems += [f"{key}: {p}" for p in _scope_problems(uplink, source, value)]
            if source != "scope_ref":  # the rfidNumber fields: as scope_refs chooses, above
                problems += [f"{key}: {p}" for p in _problems(uplink, source, value)]
    return problems


def _scope_problems(uplink: ZhejiangEndoscopeConfig, source: str, value: object) -> list[str]:
    """The rfidNumber fields `scope_refs` fills from this name of the scope, checked."""
    found: list[str] = []
    for endpoint in SCOPE_REF_DEFAULTS:
        choice = uplink.scope_ref(endpoint)
        if (SCOPE_NAMES.get(choice) or "scope_ref") != source:
            continue
        if is_empty(value):
            found.append(f"empty, but scope_refs.{endpoint} = {choice!r} sends it as rfidNumber")
            continue
        spec = next(f for f in ENDPOINTS[endpoint] if f.name == "rfidNumber")
        rules = checks(uplink.time_format, uplink.date_format)
        found += [
            f"{endpoint}.{p}" for p in validate_table({spec.name: spec}, {spec.name: value}, rules)
        ]
    return found


def _problems(uplink: ZhejiangEndoscopeConfig, source: str, value: object) -> list[str]:
    """How each seed field filled from the record field `source` refuses `value`."""
    if is_empty(value):
        return []
    found: list[str] = []
    rules = checks(uplink.time_format, uplink.date_format)
    for kind, record_map in MAPS.items():
        for field_map in record_map.fields:
            if field_map.source != source or field_map.translate or field_map.format:
                continue
            spec = next((f for f in ENDPOINTS[kind] if f.name == field_map.target), None)
            if spec is None:
                continue
            for problem in validate_table({spec.name: spec}, {spec.name: value}, rules):
                line = f"{kind}.{problem}"
                if line not in found:
                    found.append(line)
    return found


def _fetchable(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
