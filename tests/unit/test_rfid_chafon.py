"""Chafon binary frames: CRC, several frames per read, split frames, corruption, inventory data."""

from __future__ import annotations

import pytest

from agent.vocabulary.tags import Read
from drivers.rfid.chafon import ChafonParser, crc16, encode, inventory_answer
from drivers.rfid.framing import FrameParser

EPC1 = bytes.fromhex("E2003412B802011712345678")
EPC2 = bytes.fromhex("300833B2DDD9014000000000")
# Inventory answer, Adr 00, Status 01, two 12-byte EPCs: Len 0x20 = 3 + 1 + 2 * 13 + 2 CRC.
TWO_TAGS = bytes.fromhex(
    "20 00 01 01 02 0C E2003412B802011712345678 0C 300833B2DDD9014000000000"
) + crc16(bytes.fromhex("20000101020CE2003412B8020117123456780C300833B2DDD9014000000000")).to_bytes(
    2, "little"
)
READ1 = Read("E2003412B802011712345678", 96, "E2003412B802011712345678")
READ2 = Read("300833B2DDD9014000000000", 96, "300833B2DDD9014000000000")
NO_TAG = encode(0x00, 0x01, 0xFB)
ONE_TAG = inventory_answer([EPC1])


def feed_bytewise(parser: FrameParser, data: bytes) -> list[Read]:
    return [read for i in range(len(data)) for read in parser.feed(data[i : i + 1])]


def test_crc_is_crc16_mcrf4xx():
    assert crc16(b"123456789") == 0x6F91  # the catalogue check value
    # The inventory command as printed in the UHFReader18 manual, for Adr 00 and FF.
    assert encode(0x00, 0x01, None) == bytes.fromhex("04 00 01 DB 4B")
    assert encode(0xFF, 0x01, None) == bytes.fromhex("04 FF 01 1B B4")


def test_helper_builds_the_same_bytes():
    assert inventory_answer([EPC1, EPC2]) == TWO_TAGS


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_several_frames_per_read_and_split_frames(chunking):
    stream = TWO_TAGS + NO_TAG + ONE_TAG
    parser = ChafonParser()
    reads = parser.feed(stream) if chunking == "whole" else feed_bytewise(parser, stream)
    assert reads == [READ1, READ2, READ1]
    assert not parser.errors


def test_frame_split_in_two_reads():
    parser = ChafonParser()
    assert parser.feed(TWO_TAGS[:10]) == []
    assert parser.feed(TWO_TAGS[10:] + ONE_TAG[:3]) == [READ1, READ2]
    assert parser.feed(ONE_TAG[3:]) == [READ1]


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_bad_crc_counted_once_then_resynchronised(chunking):
    corrupt = bytearray(TWO_TAGS)
    corrupt[8] ^= 0x40
    stream = bytes(corrupt) + ONE_TAG
    parser = ChafonParser()
    reads = parser.feed(stream) if chunking == "whole" else feed_bytewise(parser, stream)
    assert reads == [READ1]
    assert parser.errors == {"bad_crc": 1}


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_garbage_before_and_between_frames(chunking):
    stream = b"\x00\x01" + ONE_TAG + b"\x02\x00" + ONE_TAG
    parser = ChafonParser()
    reads = parser.feed(stream) if chunking == "whole" else feed_bytewise(parser, stream)
    assert reads == [READ1, READ1]
    assert parser.errors == {"bad_length": 2}


def test_a_junk_long_length_does_not_hold_back_a_valid_frame():
    parser = ChafonParser()
    assert parser.feed(b"\xf0" + ONE_TAG) == [READ1]
    assert parser.errors == {"bad_length": 1}


def test_inconsistent_inventory_data_is_rejected():
    short = encode(0x00, 0x01, 0x01, bytes([2, 12]) + EPC1)  # says 2 tags, carries 1
    trailing = encode(0x00, 0x01, 0x01, bytes([1, 12]) + EPC1 + b"\x55")
    empty = encode(0x00, 0x01, 0x01)
    parser = ChafonParser()
    assert parser.feed(short + trailing + empty + ONE_TAG) == [READ1]
    assert parser.errors == {"bad_inventory": 3}


def test_other_commands_and_statuses_are_ignored():
    info = encode(0x00, 0x21, 0x00, bytes.fromhex("0102030405"))
    error_status = encode(0x00, 0x01, 0xFE)
    parser = ChafonParser()
    assert parser.feed(info + error_status + ONE_TAG) == [READ1]
    assert not parser.errors


def test_status_more_data_carries_tags():
    assert ChafonParser().feed(inventory_answer([EPC2], status=0x03)) == [READ2]
