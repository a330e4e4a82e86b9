"""Decimal keyboard-wedge lines and the configurable regex line parser."""

from __future__ import annotations

import pytest

from agent.vocabulary.patterns import compile_pattern
from agent.vocabulary.tags import Read
from drivers.rfid.decimal_lines import DecimalLineParser
from drivers.rfid.framing import FrameParser
from drivers.rfid.line_pattern import PatternLineParser

# Captured from a USB-serial 125 kHz reader in decimal mode: the same card, both forms.
CAPTURE = b"0013961168\r\n213,02000\r\n"
DECIMAL = Read("00D507D0", 32, "0013961168")
WIEGAND = Read("D507D0", 24, "213,02000")


def feed_bytewise(parser: FrameParser, data: bytes) -> list[Read]:
    return [read for i in range(len(data)) for read in parser.feed(data[i : i + 1])]


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_decimal_and_wiegand_lines(chunking):
    parser = DecimalLineParser()
    reads = parser.feed(CAPTURE) if chunking == "whole" else feed_bytewise(parser, CAPTURE)
    assert reads == [DECIMAL, WIEGAND]
    assert not parser.errors


def test_cr_only_lf_only_and_blank_lines():
    parser = DecimalLineParser()
    assert parser.feed(b"\r\n\n0013961168\r213,02000\n\r\n") == [DECIMAL, WIEGAND]
    assert not parser.errors


def test_garbage_lines_and_out_of_range_are_counted_and_skipped():
    parser = DecimalLineParser()
    data = b"hello\r\n4294967296\r\n256,00001\r\n\xff\xfe\r\n0013961168\r\n"
    assert parser.feed(data) == [DECIMAL]
    assert parser.errors == {"bad_line": 2, "out_of_range": 2}


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_over_long_line_is_dropped_whole(chunking):
    parser = DecimalLineParser(max_line=16)
    data = b"9" * 40 + b"0013961168\r\n" + CAPTURE
    reads = parser.feed(data) if chunking == "whole" else feed_bytewise(parser, data)
    assert reads == [DECIMAL, WIEGAND]
    assert parser.errors == {"line_too_long": 1}


def test_partial_line_waits_for_its_terminator():
    parser = DecimalLineParser()
    assert parser.feed(b"00139") == []
    assert parser.feed(b"61168") == []
    assert parser.feed(b"\n") == [DECIMAL]


def test_regex_parser_keeps_barcodes_verbatim_and_hex_as_hex():
    parser = PatternLineParser(r"^(?:WB|TAG):(?P<tag>\S+)$")
    data = b"WB:P-2024/0007x\r\nTAG:e2801160600002\r\nnoise\r\n"
    assert parser.feed(data) == [
        Read(None, 0, "P-2024/0007x"),
        Read("E2801160600002", 56, "e2801160600002"),
    ]
    assert parser.errors == {"no_match": 1}


def test_regex_parser_refuses_codes_with_control_or_non_ascii_bytes():
    parser = PatternLineParser(r"^TAG:(?P<tag>.+)$")
    assert parser.feed(b"TAG:01\x0002\r\nTAG:\xff\xfe\r\nTAG:0102\r\n") == [
        Read("0102", 16, "0102")
    ]
    assert parser.errors == {"bad_chars": 2}


def test_regex_parser_over_long_line():
    parser = PatternLineParser(r"(?P<tag>\w+)", max_line=8)
    assert parser.feed(b"ABCDEFGHIJKL\nAB12\n") == [Read("AB12", 16, "AB12")]
    assert parser.errors == {"line_too_long": 1}


@pytest.mark.parametrize("pattern", [r"(\d+)", r"(?P<tag>[", r"(?P<code>\d+)"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(ValueError):
        compile_pattern(pattern)
