"""Tag normalisation and matching configured tags against reads."""

from __future__ import annotations

import pytest

from agent.vocabulary.tags import (
    Read,
    TagIndex,
    code_read,
    hex_read,
    mask_tag,
    parse_configured_tag,
    tag_matches,
)

RDM_READ = hex_read(bytes.fromhex("0100D507D0"))  # version 01, tag 00D507D0


def test_canonical_is_uppercase_hex_in_the_configured_byte_order():
    assert Read("0100D507D0", 40, "0100D507D0") == RDM_READ
    assert RDM_READ.canonical() == "0100D507D0"
    assert RDM_READ.canonical("reversed") == "D007D50001"


def test_text_codes_are_kept_verbatim_and_never_reordered():
    barcode = code_read("P-2024/0007x")
    assert barcode == Read(None, 0, "P-2024/0007x")
    assert barcode.canonical("reversed") == "P-2024/0007x"
    assert code_read("abc1") == Read("ABC1", 16, "abc1")
    assert code_read("ABC").id_hex is None  # odd length: no byte structure, so text


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("0013961168", Read("00D507D0", 32, "0013961168")),
        ("213,02000", Read("D507D0", 24, "213,02000")),
        ("213,2000", Read("D507D0", 24, "213,2000")),
        (" 0100d507d0 ", Read("0100D507D0", 40, "0100d507d0")),
        ("01:00:D5:07:D0", Read("0100D507D0", 40, "01:00:D5:07:D0")),
        ("0x0013961168", Read("0013961168", 40, "0x0013961168")),
        ("0xD507D0", Read("D507D0", 24, "0xD507D0")),
        ("WARD-7 BED 3", Read(None, 0, "WARD-7 BED 3")),
    ],
)
def test_parse_configured_tag(typed, expected):
    assert parse_configured_tag(typed) == expected


@pytest.mark.parametrize("typed", ["", "   ", "256,00001", "001,65536", "4294967296", "0xZZ"])
def test_parse_configured_tag_rejects(typed):
    with pytest.raises(ValueError):
        parse_configured_tag(typed)


@pytest.mark.parametrize("typed", ["0013961168", "213,02000", "0100D507D0", "00d507d0"])
def test_printed_numbers_match_the_rdm6300_read_of_the_same_tag(typed):
    assert tag_matches(parse_configured_tag(typed), RDM_READ.canonical(), RDM_READ.bits)


@pytest.mark.parametrize("typed", ["0013961169", "214,02000", "0200D507D0", "D507D0FF"])
def test_other_numbers_do_not_match(typed):
    assert not tag_matches(parse_configured_tag(typed), RDM_READ.canonical(), RDM_READ.bits)


def test_decimal_read_matches_hex_configured_and_wiegand():
    read_tag, read_bits = "00D507D0", 32  # a decimal reader's 0013961168
    assert tag_matches(parse_configured_tag("0100D507D0"), read_tag, read_bits)
    assert tag_matches(parse_configured_tag("213,02000"), read_tag, read_bits)


def test_too_few_shared_bits_never_match():
    assert not tag_matches(parse_configured_tag("D0"), "0100D507D0", 40)


def test_text_codes_match_exactly():
    assert tag_matches(parse_configured_tag("P-2024/0007x"), "P-2024/0007x", 0)
    assert not tag_matches(parse_configured_tag("P-2024/0007X"), "P-2024/0007x", 0)
    assert not tag_matches(parse_configured_tag("P-2024/0007x"), "0100D507D0", 40)


def test_decimal_looking_barcode_matches_its_printed_form():
    read = code_read("0013961168")  # a wristband barcode through the regex parser
    assert tag_matches(parse_configured_tag("0013961168"), read.canonical(), read.bits)


def test_mask_tag_hides_all_but_the_tail():
    assert mask_tag("0100D507D0") == "******07D0"
    assert mask_tag("D507D0") == "****D0"


def test_tag_index_finds_scopes_by_any_printed_form():
    index: TagIndex[str] = TagIndex()
    index.add("0013961168", "scope-1")  # printed decimal of RDM_READ
    index.add("E2003412B802011712345678", "scope-2")  # a UHF EPC
    index.add("P-2024/0007x", "patient-band")
    index.add("100,00042", "badge-9")
    assert index.get(RDM_READ.canonical(), RDM_READ.bits) == "scope-1"
    assert index.get("e2003412b802011712345678", 96) == "scope-2"
    assert index.get("P-2024/0007x", 0) == "patient-band"
    assert index.get("01640002A", 0) is None
    assert index.get("0000640002A", 0) is None
    assert index.get("FF0064002A", 40) == "badge-9"  # low 24 bits 64 002A = 100,00042
    assert index.get("0100D507D1", 40) is None


@pytest.mark.parametrize("second", ["213,02000", "0100D507D0", "00d507d0", "0013961168"])
def test_tag_index_refuses_entries_matching_the_same_reads(second):
    index: TagIndex[int] = TagIndex()
    index.add("0013961168", 1)
    with pytest.raises(ValueError, match="matches the same reads"):
        index.add(second, 2)
