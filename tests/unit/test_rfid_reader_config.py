"""The rfid_reader config model: validated at construction, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.rfid.reader import RfidReaderConfig, build


def config(**keys: Any) -> RfidReaderConfig:
    return RfidReaderConfig.model_validate(
        {"type": "rfid_reader", "url": "tcp://127.0.0.1:6000", "protocol": "rdm6300", **keys}
    )


def test_defaults():
    model = config()
    assert model.debounce == 2.0 and model.byte_order == "as-read" and model.reader_id is None
    reader = build("station_1", model)
    assert reader.reader_id == "station_1" and not reader.online and reader.errors == {}
    assert reader.last_frame_at is None


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"url": "ftp://x"}, "must start with"),
        ({"protocol": "wiegand"}, "protocol"),
        ({"protocol": "regex"}, "pattern is required"),
        ({"pattern": r"(?P<tag>\d+)"}, "only allowed there"),
        ({"protocol": "regex", "pattern": r"(\d+)"}, "named group `tag`"),
        ({"byte_order": "little"}, "byte_order"),
        ({"debounce": -1}, "debounce"),
        ({"reconnect_initial": 10, "reconnect_max": 5}, "reconnect_max"),
        ({"baud": 9600}, "Extra inputs"),
        ({"poll_interval": 0.5}, "only allowed with"),
        ({"protocol": "chafon", "address": 256}, "address"),
    ],
)
def test_invalid(keys, message):
    with pytest.raises(ValidationError, match=message):
        config(**keys)


def test_regex_reader():
    model = config(protocol="regex", pattern=r"^WB(?P<tag>\d+)$", reader_id="R-07")
    assert build("wristband", model).reader_id == "R-07"
