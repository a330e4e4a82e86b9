"""The domain's neutral records (agent.vocabulary.records) → the seed's fields: records.toml."""

from __future__ import annotations

from pathlib import Path

from agent.uplinks.kit.fieldfile import load_field_file
from agent.uplinks.kit.fieldmap import RecordMap

MAP_FILE = Path(__file__).with_name("records.toml")
MAPS: dict[str, RecordMap] = load_field_file(MAP_FILE).maps
