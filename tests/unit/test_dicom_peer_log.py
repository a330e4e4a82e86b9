"""Lines about peers: escaped and bounded text, one line per key and window, library records."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.logs import peer_text
from drivers.dicom.peer_log import OncePer, route_library_records


def test_peer_text_escapes_control_and_non_ascii_and_is_bounded():
    assert peer_text("CT1") == "CT1"
    assert peer_text(b"EVIL\n\x1b[2J\xff") == "EVIL\\n\\x1b[2J\\xff"
    assert peer_text("a\\b") == "a\\\\b"  # a backslash cannot fake an escape
    assert peer_text("x" * 100, 10) == "x" * 10 + "..."


@given(st.one_of(st.text(), st.binary()), st.integers(1, 80))
def test_peer_text_is_always_one_printable_ascii_line(value: str | bytes, limit: int):
    text = peer_text(value, limit)
    assert text.isascii() and text.isprintable()
    assert len(text) <= limit + 3


def test_once_per_logs_the_first_then_once_a_window_with_the_count():
    now = [0.0]
    once = OncePer(window=60.0, max_keys=2, clock=lambda: now[0])
    assert once.first(("10.0.0.1", "busy")) == 0
    assert [once.first(("10.0.0.1", "busy")) for _ in range(5)] == [None] * 5
    assert once.first(("10.0.0.2", "busy")) == 0  # another key: its own line
    now[0] = 61.0
    assert once.first(("10.0.0.1", "busy")) == 5  # a line again, with what was left out
    once.first("c")
    once.first("d")
    assert len(once._keys) == 2  # bounded: the oldest keys are forgotten


def test_library_records_become_one_escaped_warning_without_traceback():
    route_library_records()
    dul = logging.getLogger("pynetdicom.dul")
    with capture_logs() as logs:
        try:
            raise ValueError("boom")
        except ValueError:
            for _ in range(3):
                dul.exception("Unable to decode %s", "AE\nTITLE")
    assert logs == [
        {
            "event": "dicom.library_message",
            "log_level": "warning",
            "library": "pynetdicom.dul",
            "severity": "error",
            "message": "Unable to decode AE\\nTITLE",
            "repeated": None,
        }
    ]
