"""DICOM upper-layer PDUs and DIMSE command sets as bytes (PS3.8 §9.3, PS3.7 §9.3, PS3.10 §7.1)."""

from __future__ import annotations

import struct

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

C_STORE_RQ = 0x0001
C_ECHO_RQ = 0x0030
C_CANCEL_RQ = 0x0FFF
NO_DATASET = 0x0101
UNRECOGNIZED_OPERATION = 0x0211

# A-ABORT source 2 (service provider) reasons
ABORT_UNRECOGNIZED_PDU = 0x01
ABORT_UNEXPECTED_PDU = 0x02
ABORT_INVALID_PARAMETER = 0x06

COMMAND_GROUP_LENGTH = 0x00000000
AFFECTED_SOP_CLASS = 0x00000002
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_RESPONDED = 0x00000120
DATASET_TYPE = 0x00000800
STATUS = 0x00000900
AFFECTED_SOP_INSTANCE = 0x00001000

_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")


class ProtocolError(Exception):
    """The peer broke the upper-layer or DIMSE protocol; the association must be aborted."""


def pdu_header(header: bytes) -> tuple[int, int]:
    """(PDU type, length of what follows) from a PDU's first 6 bytes."""
    kind, length = _PDU_HEADER.unpack(header)
    return kind, length


def pdv_header(header: bytes) -> tuple[int, int, int]:
    """(data length, presentation context ID, message control header) of a PDV item."""
    length, context_id, control = _PDV_HEADER.unpack(header)
    if length < 2:
        raise ProtocolError(f"PDV item length {length} is below 2")
    return length - 2, context_id, control


def parse_command(raw: bytes) -> dict[int, bytes]:
    """A command set (implicit VR little endian, group 0000) as {tag: value bytes}."""
    elements: dict[int, bytes] = {}
    pos, end = 0, len(raw)
    while pos < end:
        if pos + 8 > end:
            raise ProtocolError("command set ends inside an element header")
        group, element, length = _ELEMENT.unpack_from(raw, pos)
        pos += 8
        if group != 0 or pos + length > end:
            raise ProtocolError(f"command element ({group:04X},{element:04X}) is malformed")
        elements[element] = raw[pos : pos + length]
        pos += length
    return elements


def command_us(elements: dict[int, bytes], tag: int) -> int:
    """An unsigned short of the command set; ProtocolError when it is missing."""
    value = elements.get(tag)
    if value is None or len(value) != 2:
        raise ProtocolError(f"command element (0000,{tag:04X}) is missing or not a US")
    number: int = _US.unpack(value)[0]
    return number


def command_uid(elements: dict[int, bytes], tag: int) -> str:
    """A UID of the command set ("" when absent), without its padding; printable ASCII only."""
    value = elements.get(tag, b"").rstrip(b"\0 ")
    # Lenient beyond PS3.5's digits and dots (some devices pad oddly), but it is echoed in
    # the response and the file meta, and written to the log: nothing unprintable.
    if len(value) > 64 or not all(0x20 < byte < 0x7F and byte != 0x5C for byte in value):
        raise ProtocolError(f"command element (0000,{tag:04X}) is not a UID")
    return value.decode("ascii")


def encode_response(
    command: int,
    message_id: int,
    status: int,
    sop_class: str = "",
    sop_instance: str = "",
    *,
    error_comment: str = "",
) -> bytes:
    """The command set of a DIMSE response without a data set (ErrorComment: ASCII, ≤ 64)."""
    comment = error_comment.encode("ascii", "replace")[:64]
    comment += b" " * (len(comment) % 2)
    body = b"".join(
        [
            _uid_element(AFFECTED_SOP_CLASS, sop_class) if sop_class else b"",
            _us_element(COMMAND_FIELD, command | 0x8000),
            _us_element(MESSAGE_ID_RESPONDED, message_id),
            _us_element(DATASET_TYPE, NO_DATASET),
            _us_element(STATUS, status),
            _ELEMENT.pack(0, 0x0902, len(comment)) + comment if comment else b"",
            _uid_element(AFFECTED_SOP_INSTANCE, sop_instance) if sop_instance else b"",
        ]
    )
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + body


def encode_store_request(
    message_id: int,
    sop_class: str,
    sop_instance: str,
    priority: int = 2,
    move_originator: tuple[str, int] | None = None,
) -> bytes:
    """The command set of a C-STORE-RQ with a data set (move originator AE and message ID)."""
    originator = b""
    if move_originator is not None:
        ae = move_originator[0].encode("ascii")
        ae += b" " * (len(ae) % 2)
        originator = _ELEMENT.pack(0, 0x1030, len(ae)) + ae
        originator += _us_element(0x1031, move_originator[1])
    body = b"".join(
        [
            _uid_element(AFFECTED_SOP_CLASS, sop_class),
            _us_element(COMMAND_FIELD, C_STORE_RQ),
            _us_element(MESSAGE_ID, message_id),
            _us_element(0x0700, priority),
            _us_element(DATASET_TYPE, 0x0001),
            _uid_element(AFFECTED_SOP_INSTANCE, sop_instance),
            originator,
        ]
    )
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + body


def p_data_command(context_id: int, command: bytes, max_pdu: int) -> bytes:
    """P-DATA-TF PDUs carrying `command`, split to fit the peer's maximum PDU length (0: any)."""
    room = len(command) if max_pdu == 0 else max(max_pdu - 6, 1)  # PDV header: 4 + 2
    pdus = []
    for start in range(0, len(command), room):
        chunk = command[start : start + room]
        last = start + room >= len(command)
        pdv = _PDV_HEADER.pack(len(chunk) + 2, context_id, 0x03 if last else 0x01) + chunk
        pdus.append(_PDU_HEADER.pack(P_DATA_TF, len(pdv)) + pdv)
    return b"".join(pdus)


def p_data_header(context_id: int, size: int, control: int) -> bytes:
    """The P-DATA-TF PDU and PDV headers before `size` bytes of one fragment."""
    return _PDU_HEADER.pack(P_DATA_TF, size + 6) + _PDV_HEADER.pack(size + 2, context_id, control)


def release_rp() -> bytes:
    """An A-RELEASE-RP PDU."""
    return _PDU_HEADER.pack(A_RELEASE_RP, 4) + b"\0" * 4


def abort(reason: int) -> bytes:
    """An A-ABORT PDU from the service provider (source 2) with `reason`."""
    return _PDU_HEADER.pack(A_ABORT, 4) + bytes([0, 0, 2, reason])


def file_meta(
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    impl_uid: str,
    impl_version: str,
    *,
    extra: bytes = b"",
) -> bytes:
    """Preamble, `DICM` and the File Meta Information, byte for byte as pydicom writes them,
    followed by the encoded `extra` elements of group 0002 (counted in its group length)."""
    group = b"".join(
        [
            struct.pack("<HH2sHL", 2, 1, b"OB", 0, 2) + b"\0\1",
            _explicit(0x0002, "UI", sop_class, b"\0"),
            _explicit(0x0003, "UI", sop_instance, b"\0"),
            _explicit(0x0010, "UI", transfer_syntax, b"\0"),
            _explicit(0x0012, "UI", impl_uid, b"\0"),
            _explicit(0x0013, "SH", impl_version, b" ") if impl_version else b"",
            extra,
        ]
    )
    length = struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(group))
    return b"\0" * 128 + b"DICM" + length + group


def _explicit(element: int, vr: str, text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", 2, element, vr.encode(), len(value)) + value


def _us_element(tag: int, value: int) -> bytes:
    return _ELEMENT.pack(0, tag, 2) + _US.pack(value)


def _uid_element(tag: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"
    return _ELEMENT.pack(0, tag, len(value)) + value
