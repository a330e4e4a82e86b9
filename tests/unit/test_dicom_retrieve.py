"""What C-GET/C-MOVE can convert without a codec, the byte swap big endian needs, and how
often a C-MOVE reports progress."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_MOVE, C_STORE
from pynetdicom.dsutils import encode, split_dataset

from drivers.dicom import qr, retrieve, wire
from drivers.dicom.retrieve import converts, dataset_offset, swap_other_words


def test_conversions_go_to_uncompressed_from_what_a_codec_decodes() -> None:
    plain = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian]
    plain.append(uid.DeflatedExplicitVRLittleEndian)
    assert all(converts(a, b) for a in plain for b in plain)
    decoded = (uid.JPEGBaseline8Bit, uid.JPEGLSLossless, uid.JPEG2000, uid.HTJ2K, uid.RLELossless)
    for compressed in decoded:  # the codecs the product installs (pylibjpeg, pydicom's RLE)
        assert all(converts(compressed, target) for target in plain)
    for compressed in (*decoded, uid.MPEG2MPML, uid.HEVCMP51):
        assert not converts(uid.ExplicitVRLittleEndian, compressed)  # never made lossy here
        assert not converts(uid.JPEGBaseline8Bit, compressed)
    assert not converts(uid.MPEG2MPML, uid.ExplicitVRLittleEndian)  # no video decoder


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


def test_the_store_request_command_set_is_pynetdicoms() -> None:
    req = C_STORE()
    req.MessageID, req.Priority = 7, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.45"
    req.MoveOriginatorApplicationEntityTitle, req.MoveOriginatorMessageID = "EDGE", 3
    req._dataset_path = (Path("unused.dcm"), 0)  # a data set follows
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    expected = encode(message.command_set, True, True)
    moved = wire.encode_store_request(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", 2, ("EDGE", 3))
    assert moved == expected
    plain = wire.encode_store_request(8, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.456")
    assert wire.command_us(wire.parse_command(plain[12:]), wire.MESSAGE_ID) == 8
    assert 0x1030 not in wire.parse_command(plain[12:])


def test_the_data_set_offset_is_read_from_the_meta_group_length(tmp_path: Path) -> None:
    for name in ("CT_small.dcm", "ExplVR_BigEnd.dcm", "image_dfl.dcm", "693_J2KI.dcm"):
        path = Path(str(get_testdata_file(name)))
        assert dataset_offset(path) == split_dataset(path)[1]
    without = tmp_path / "no-length.dcm"  # a meta group without (0002,0000): pydicom's way
    data = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    without.write_bytes(data[:132] + data[144:])
    assert dataset_offset(without) == split_dataset(without)[1]


def test_a_move_sends_pending_responses_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[int, float]] = []
    clock = [0.0]
    monkeypatch.setattr("drivers.dicom.qr.time.monotonic", lambda: clock[0])

    class Dimse:
        def send_msg(self, primitive: C_MOVE, context_id: int) -> None:
            sent.append((int(primitive.Status or 0), clock[0]))

    assoc = SimpleNamespace(dimse=Dimse())
    qr.fewer_pending_responses(assoc)
    qr.fewer_pending_responses(assoc)  # a second move on the association: not wrapped twice
    for step in range(10):
        clock[0] = step * 0.1
        pending = C_MOVE()
        pending.Status = qr.PENDING
        assoc.dimse.send_msg(pending, 1)
    final = C_MOVE()
    final.Status = 0x0000
    assoc.dimse.send_msg(final, 1)
    assert [status for status, _ in sent] == [qr.PENDING] * 4 + [0x0000]
    assert [round(at, 1) for _, at in sent[:4]] == [0.0, 0.3, 0.6, 0.9]


class _Trickle:
    """A socket whose every send takes at most `most` bytes, as a full buffer does."""

    def __init__(self, most: int) -> None:
        self.most, self.out, self.calls = most, bytearray(), 0

    def sendmsg(self, buffers: list[memoryview]) -> int:
        self.calls += 1
        assert len(buffers) <= retrieve.IOV_MAX
        data = b"".join(buffers)[: self.most]
        self.out += data
        return len(data)


@pytest.mark.parametrize("most", [1, 7, 4096, 1 << 30])
def test_gathered_sends_survive_partial_writes(most: int) -> None:
    data = memoryview(bytes(range(256)) * 300)
    parts = [b"command", *retrieve.fragments(1, 1000, data, True), b"", b"tail"]
    sock = _Trickle(most)
    retrieve.send_parts(cast(Any, sock), parts)
    assert bytes(sock.out) == b"".join(parts)
    if most == 1 << 30:
        assert sock.calls == 1  # 78 PDUs in one system call


def test_fragments_flag_only_the_last_pdu_of_the_data_set() -> None:
    parts = retrieve.fragments(3, 10, memoryview(bytes(25)), True)
    headers = [wire.pdu_header(bytes(h[:6])) for h in parts[::2]]
    controls = [bytes(h)[11] for h in parts[::2]]
    assert headers == [(wire.P_DATA_TF, 16), (wire.P_DATA_TF, 16), (wire.P_DATA_TF, 11)]
    assert controls == [0x00, 0x00, 0x02]
    assert retrieve.fragments(3, 10, memoryview(bytes(20)), False)[-2][11] == 0x00
