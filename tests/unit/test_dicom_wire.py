"""The lean acceptor's bytes: file meta as pydicom writes it, responses as pydicom reads them."""

from __future__ import annotations

import io

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom.dsutils import create_file_meta, decode

from drivers.dicom import wire

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.3.45"])  # even and odd lengths
def test_file_meta_is_byte_identical_to_pydicoms(instance: str):
    meta = create_file_meta(
        sop_class_uid=UID(CT),
        sop_instance_uid=UID(instance),
        transfer_syntax=UID("1.2.840.10008.1.2.1"),
    )
    expected = DicomBytesIO()
    expected.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(expected, meta)
    ours = wire.file_meta(
        CT,
        instance,
        "1.2.840.10008.1.2.1",
        str(meta.ImplementationClassUID),
        str(meta.ImplementationVersionName),
    )
    assert ours == expected.getvalue()


def test_a_store_response_reads_back_with_its_group_length():
    raw = wire.encode_response(wire.C_STORE_RQ, 7, 0xA700, CT, "1.2.3.45")
    command = decode(io.BytesIO(raw), True, True)
    assert command.CommandField == 0x8001
    assert command.MessageIDBeingRespondedTo == 7
    assert command.Status == 0xA700
    assert command.CommandDataSetType == 0x0101
    assert command.AffectedSOPClassUID == CT
    assert command.AffectedSOPInstanceUID == "1.2.3.45"
    assert command.CommandGroupLength == len(raw) - 12


def test_a_command_is_split_to_the_peers_maximum_pdu():
    command = wire.encode_response(wire.C_ECHO_RQ, 1, 0, "1.2.840.10008.1.1")
    stream = wire.p_data_command(3, command, max_pdu=32)
    parts, controls, pos = [], [], 0
    while pos < len(stream):
        kind, length = wire.pdu_header(stream[pos : pos + 6])
        assert kind == wire.P_DATA_TF and length <= 32
        size, context_id, control = wire.pdv_header(stream[pos + 6 : pos + 12])
        assert context_id == 3
        parts.append(stream[pos + 12 : pos + 12 + size])
        controls.append(control)
        pos += 6 + length
    assert b"".join(parts) == command
    assert controls == [0x01] * (len(parts) - 1) + [0x03]  # only the last says "last"


def test_a_malformed_command_set_is_a_protocol_error():
    good = wire.encode_response(wire.C_ECHO_RQ, 1, 0)
    with pytest.raises(wire.ProtocolError, match="ends inside"):
        wire.parse_command(good + b"\0\0\0")
    with pytest.raises(wire.ProtocolError, match="malformed"):
        wire.parse_command(good[:-1])
    with pytest.raises(wire.ProtocolError, match="0000,0110"):
        wire.command_us(wire.parse_command(good), wire.MESSAGE_ID)
