"""ESC/POS stripping and receipt boundaries on captured printer bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.washer.assembler import ReceiptAssembler
from drivers.washer.escpos import Kind, scan, strip

FIXTURES = Path(__file__).parents[1] / "fixtures" / "washer"


def test_strip_removes_commands_and_keeps_text():
    data = (
        b"\x1b@\x1c&\x1ba\x01\x1b!\x30\x1d!\x11\x1c!\x0c"  # init, 汉字 mode, align, sizes
        + "结果".encode("gb18030")
        + b"\x1bE\x01: \x1bE\x00"  # bold on/off
        + "合格".encode("gb18030")
        + b"\r\n\x1b3\x18\x1b2\x1bJ\x30\x1bd\x04\x1c.\x1dVB\x00"
    )
    stripped = strip(data)
    assert stripped.text.decode("gb18030") == "结果: 合格\n"
    assert stripped.cuts == 1
    assert not stripped.truncated


def test_raster_image_data_is_skipped_even_when_it_looks_like_commands():
    # GS v 0: 2 bytes wide, 3 dots high = 6 data bytes holding a cut, an init and a LF.
    image = b"\x1dv0\x00\x02\x00\x03\x00" + b"\x1dV\x00\x1b@\x0a"
    stripped = strip(b"A" + image + b"B\n")
    assert stripped.text == b"AB\n"
    assert stripped.cuts == 0


@pytest.mark.parametrize(
    ("command", "size"),
    [
        (b"\x1b*\x21\x02\x00" + b"\x00" * 6, 11),  # ESC * 24-dot: 3 bytes per column
        (b"\x1b*\x00\x03\x00" + b"\x00" * 3, 8),  # ESC * 8-dot: 1 byte per column
        (b"\x1d*\x01\x01" + b"\x00" * 8, 12),  # GS * x y: x*y*8 bytes
        (b"\x1d(L\x03\x000p0", 8),  # GS ( L pL pH + 3 bytes
        (b"\x1d8L\x02\x00\x00\x000p", 9),  # GS 8 L p1..p4 + 2 bytes
        (b"\x1dk\x04123\x00", 7),  # GS k m=4: NUL-terminated barcode
        (b"\x1dkI\x03abc", 7),  # GS k m=73: length-prefixed barcode
        (b"\x1bD\x08\x10\x00", 5),  # ESC D: tab stops up to NUL
        (b"\x1bp\x00\x19\xfa", 5),  # ESC p: cash drawer pulse
        (b"\x10\x04\x01", 3),  # DLE EOT: status request
        (b"\x1c2\xa1\xa1" + b"\x00" * 72, 76),  # FS 2: user-defined 汉字
    ],
)
def test_variable_and_fixed_length_commands(command: bytes, size: int):
    token = scan(command + b"X", 0)
    assert token is not None
    assert (token.kind, token.end) == (Kind.CONTROL, size)
    assert scan(command[:-1], 0) is None  # one byte short: more is needed


@pytest.mark.parametrize("cut", [b"\x1dV\x00", b"\x1dV1", b"\x1dVA\x10", b"\x1bi", b"\x1bm"])
def test_every_cut_form_is_a_cut(cut: bytes):
    token = scan(cut, 0)
    assert token is not None and token.kind is Kind.CUT and token.end == len(cut)


def test_a_receipt_ending_inside_a_command_is_truncated():
    assert strip(b"text\x1dv0\x00\x10\x00\x10\x00\xff").truncated


def test_captured_receipt_strips_to_the_printed_text():
    raw = (FIXTURES / "printer_oer_aw.bin").read_bytes()
    text = (FIXTURES / "thermal_oer_aw.txt").read_bytes()
    stripped = strip(raw)
    assert stripped.cuts == 1
    assert stripped.text.decode("gb18030").rstrip("\n") == text.decode("gb18030").rstrip("\n")


def test_assembler_splits_at_cuts_even_fed_byte_by_byte():
    first = (FIXTURES / "printer_oer_aw.bin").read_bytes()
    second = (FIXTURES / "printer_laoken.bin").read_bytes()
    assembler = ReceiptAssembler(max_bytes=4096)
    chunks = []
    for byte in first + second + b"\x1b@partial":
        chunks += assembler.feed(bytes([byte]))
    assert [c.data for c in chunks] == [first, second]
    assert assembler.pending
    rest = assembler.flush()
    assert rest is not None and rest.data == b"\x1b@partial" and not rest.oversize
    assert not assembler.pending and assembler.flush() is None


def test_assembler_ends_a_receipt_at_the_end_marker_line():
    marker = "签名".encode("gb18030")
    assembler = ReceiptAssembler(max_bytes=4096, end_marker=marker)
    one = b"A\n" + marker + b":____\n"
    chunks = assembler.feed(one + b"B\n" + marker[:1])
    assert [c.data for c in chunks] == [one]
    chunks = assembler.feed(marker[1:] + b"\n")
    assert [c.data for c in chunks] == [b"B\n" + marker + b"\n"]


def test_assembler_rejects_oversize_receipts_up_to_their_boundary():
    assembler = ReceiptAssembler(max_bytes=300)
    chunks = assembler.feed(b"x" * 301)
    assert [(len(c.data), c.oversize) for c in chunks] == [(301, True)]
    chunks = assembler.feed(b"tail\x1dV\x00next")
    assert [(c.data, c.oversize) for c in chunks] == [(b"tail\x1dV\x00", True)]
    rest = assembler.flush()
    assert rest is not None and (rest.data, rest.oversize) == (b"next", False)
