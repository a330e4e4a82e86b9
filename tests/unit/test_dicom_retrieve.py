"""What C-GET/C-MOVE can convert without a codec, and the byte swap big endian needs."""

from __future__ import annotations

from pydicom import uid
from pydicom.dataset import Dataset

from drivers.dicom import wire
from drivers.dicom.retrieve import converts, swap_other_words


def test_only_uncompressed_and_deflated_syntaxes_convert_to_each_other() -> None:
    plain = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian]
    plain.append(uid.DeflatedExplicitVRLittleEndian)
    assert all(converts(a, b) for a in plain for b in plain)
    for compressed in (uid.JPEGBaseline8Bit, uid.JPEG2000, uid.RLELossless):
        assert not converts(compressed, uid.ExplicitVRLittleEndian)
        assert not converts(uid.ExplicitVRLittleEndian, compressed)


def test_other_word_values_are_swapped_by_their_unit_and_bytes_are_not() -> None:
    ds = Dataset()
    ds.add_new(0x7FE00010, "OW", b"\x01\x02\x03\x04")
    ds.add_new(0x00660016, "OF", b"\x01\x02\x03\x04\x05\x06\x07\x08")
    ds.add_new(0x00091010, "OB", b"\x01\x02")
    item = Dataset()
    item.add_new(0x00283006, "OW", b"\xaa\xbb")  # LUT Data inside a sequence
    ds.add_new(0x00283010, "SQ", [item])
    swap_other_words(ds)
    assert ds[0x7FE00010].value == b"\x02\x01\x04\x03"
    assert ds[0x00660016].value == b"\x04\x03\x02\x01\x08\x07\x06\x05"
    assert ds[0x00091010].value == b"\x01\x02"
    assert ds[0x00283010].value[0][0x00283006].value == b"\xbb\xaa"


def test_a_data_fragment_header_counts_its_pdv_header() -> None:
    header = wire.p_data_header(3, 10, 0x02)
    assert wire.pdu_header(header[:6]) == (wire.P_DATA_TF, 16)
    assert wire.pdv_header(header[6:]) == (10, 3, 0x02)
