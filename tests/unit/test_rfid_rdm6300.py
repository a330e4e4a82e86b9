"""RDM6300 frames: captured bytes, garbage, split frames, bad checksums, resynchronisation."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from agent.vocabulary.tags import Read
from drivers.rfid.framing import FrameParser
from drivers.rfid.rdm6300 import Rdm6300Parser, encode

# Captured from an RDM6300 with an EM4100 card: version 01, tag 00D507D0, checksum 03.
FRAME = bytes.fromhex("02 30 31 30 30 44 35 30 37 44 30 30 33 03")
READ = Read("0100D507D0", 40, "0100D507D0")
OTHER = encode(bytes.fromhex("1A2B3C4D5E"))
OTHER_READ = Read("1A2B3C4D5E", 40, "1A2B3C4D5E")


def feed_bytewise(parser: FrameParser, data: bytes) -> list[Read]:
    return [read for i in range(len(data)) for read in parser.feed(data[i : i + 1])]


def test_the_documented_example_checksum_is_the_xor_of_the_five_bytes():
    assert 0x01 ^ 0x00 ^ 0xD5 ^ 0x07 ^ 0xD0 == 0x03
    assert encode(bytes.fromhex("0100D507D0")) == FRAME


def test_one_frame():
    parser = Rdm6300Parser()
    assert parser.feed(FRAME) == [READ]
    assert not parser.errors


def test_lowercase_hex_is_accepted():
    frame = b"\x02" + FRAME[1:-1].lower() + b"\x03"
    assert Rdm6300Parser().feed(frame) == [READ]


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_garbage_before_between_and_after_frames(chunking):
    stream = b"\x00\xff\r\nAT" + FRAME + b"\r\n\x03junk" + OTHER + FRAME + b"\x7f"
    parser = Rdm6300Parser()
    reads = parser.feed(stream) if chunking == "whole" else feed_bytewise(parser, stream)
    assert reads == [READ, OTHER_READ, READ]
    assert parser.errors == {"garbage": 3}  # one per run, however the bytes arrived


def test_split_frame_across_reads():
    parser = Rdm6300Parser()
    assert parser.feed(FRAME[:5]) == []
    assert parser.feed(FRAME[5:13]) == []
    assert parser.feed(FRAME[13:] + FRAME[:1]) == [READ]
    assert parser.feed(FRAME[1:]) == [READ]


def test_several_frames_in_one_read():
    assert Rdm6300Parser().feed(FRAME + OTHER + FRAME) == [READ, OTHER_READ, READ]


def test_bad_checksum_is_counted_logged_and_the_next_frame_read():
    bad = FRAME[:11] + b"04" + FRAME[13:]
    parser = Rdm6300Parser("desk")
    with capture_logs() as logs:
        assert parser.feed(bad + OTHER + bad) == [OTHER_READ]
    assert parser.errors == {"bad_checksum": 2}
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1  # the first of a reason warns, repeats go to debug
    assert warnings[0]["reason"] == "bad_checksum" and warnings[0]["source"] == "desk"
    assert not any("D507D0" in str(value) for entry in logs for value in entry.values())


def test_truncated_frame_resynchronises_on_the_next_stx():
    parser = Rdm6300Parser()
    assert feed_bytewise(parser, FRAME[:7] + FRAME) == [READ]
    assert parser.errors == {"truncated": 1}


def test_bad_terminator_and_non_hex_body():
    parser = Rdm6300Parser()
    no_etx = FRAME[:-1] + b"\x04"
    not_hex = FRAME[:3] + b"G" + FRAME[4:]
    assert parser.feed(no_etx + not_hex + FRAME) == [READ]
    assert parser.errors["bad_framing"] == 1
    assert parser.errors["bad_hex"] == 1


def test_reset_drops_a_partial_frame():
    parser = Rdm6300Parser()
    parser.feed(FRAME[:9])
    parser.reset()
    assert parser.feed(FRAME) == [READ]
    assert not parser.errors
