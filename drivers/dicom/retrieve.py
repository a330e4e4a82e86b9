"""C-STORE sub-operations of C-GET and C-MOVE: the stored bytes as they are, else a conversion.

pynetdicom's Q/R service sends what the handler yields with `Association.send_c_store`, which
re-encodes a Dataset through pydicom (dropping group lengths: not the bytes that were stored).
A `StoredInstance` is sent instead (by C-GET over pynetdicom's association, by C-MOVE over a
`store_link.StoreLink`) as the spool file's data set, streamed from disk after its
file meta, when the peer accepted the stored syntax; otherwise it is converted to the first
accepted syntax it can be converted to. When none can, the sub-operation fails with a reason and
pynetdicom counts it (Failed SOP Instance UID List): the other instances still go.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.presentation import PresentationContext

from drivers.dicom import wire

log = structlog.get_logger(__name__)

MAX_FRAGMENT = 1 << 20  # a peer without a PDU limit still gets the data set in 1 MiB PDUs
READ_BLOCK = 1 << 20  # bytes of a spool file read (and sent in one call) at a time
IOV_MAX = 1024  # buffers per sendmsg (POSIX's minimum IOV_MAX is 16; Linux and BSDs: 1024)
_SWAP_UNITS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}  # other-VRs pydicom keeps as bytes


class NotSent(Exception):
    """An instance the peer cannot be sent (no accepted syntax it converts to, unreadable)."""


class StoredInstance(Dataset):
    """A spool file to send as a sub-operation (a Dataset: pynetdicom lists its UID on failure)."""

    def __init__(self, path: Path, sop_class: str, sop_instance: str, syntax: str) -> None:
        super().__init__()
        self.SOPClassUID = sop_class
        self.SOPInstanceUID = sop_instance
        self.path = path
        self.stored_syntax = UID(syntax)
        self.purged = False  # its file was deleted by the spool retention policy


def converts(stored: UID, target: UID) -> bool:
    """Whether a data set in `stored` can be sent in `target` here: to an uncompressed syntax,
    from another uncompressed one (deflate is not "compressed"), or from a compressed one an
    installed codec decodes (pylibjpeg: JPEG, JPEG-LS, JPEG 2000, HTJ2K; RLE). Never into a
    compressed syntax: a lossy copy is not made on the way out."""
    if target.is_compressed:
        return False
    return not stored.is_compressed or decodes(stored)


def decodes(syntax: UID) -> bool:
    """Whether an installed codec decodes pixel data in `syntax`."""
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:  # no decoder is written for it (e.g. the video syntaxes)
        return False


def encoded(instance: StoredInstance, target: UID) -> bytes:
    """The instance's data set re-encoded in `target`; NotSent if that is not possible."""
    stored = instance.stored_syntax
    if not converts(stored, target):
        raise NotSent(f"no conversion from {stored.name} to {target.name}")
    ds = dcmread(instance.path)
    if stored.is_compressed:
        try:
            # The same instance, decoded: its SOP Instance UID stays (pydicom would make a new one).
            ds.decompress(generate_instance_uid=False)  # now Explicit VR LE, native pixels
        except Exception as err:  # a codec's own error on data it cannot decode
            raise NotSent(f"{stored.name} could not be decoded: {type(err).__name__}") from err
        stored = UID(ds.file_meta.TransferSyntaxUID)
    if stored.is_little_endian != target.is_little_endian:
        swap_other_words(ds)
    data = encode(ds, target.is_implicit_VR, target.is_little_endian, target.is_deflated)
    if data is None:
        raise NotSent(f"cannot encode the data set in {target.name}")
    return data


def swap_other_words(ds: Dataset) -> None:
    """Byte-swap OW/OF/OL/OD/OV values (pydicom converts the other VRs, not these bytes)."""
    for element in ds.iterall():
        unit = _SWAP_UNITS.get(str(element.VR))
        value = element.value
        if unit is None or not isinstance(value, bytes | bytearray) or len(value) % unit:
            continue
        swapped = bytearray(len(value))
        for byte in range(unit):
            swapped[byte::unit] = value[unit - 1 - byte :: unit]
        element.value = bytes(swapped)


Payload = Path | bytes  # a spool file whose data set goes as stored, or converted bytes


def payload_for(
    contexts: list[PresentationContext], instance: StoredInstance
) -> tuple[PresentationContext, Payload]:
    """The accepted context to send `instance` on and its data set: as stored when the peer
    accepted the stored syntax, else converted to the first it can be; NotSent if none."""
    mine = [cx for cx in contexts if cx.abstract_syntax == instance.SOPClassUID]
    for cx in mine:
        if cx.transfer_syntax[0] == instance.stored_syntax:
            return cx, instance.path
    for cx in mine:
        if converts(instance.stored_syntax, cx.transfer_syntax[0]):
            return cx, encoded(instance, cx.transfer_syntax[0])
    if not mine:
        raise NotSent("the peer accepted no context for the SOP class")
    raise NotSent("no accepted transfer syntax the stored one converts to")


def send_stored(
    assoc: Association,
    instance: StoredInstance,
    msg_id: int = 1,
    *,
    priority: int = 2,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> Dataset:
    """One C-STORE of `instance` on `assoc`; the response status, as `send_c_store` returns it."""
    if not assoc.is_established:
        raise RuntimeError("the association is not established")
    contexts = [cx for cx in assoc.accepted_contexts if cx.as_scu]
    req = C_STORE()
    req.MessageID = msg_id
    req.Priority = priority
    req.MoveOriginatorApplicationEntityTitle = originator_aet
    req.MoveOriginatorMessageID = originator_id
    req.AffectedSOPClassUID = instance.SOPClassUID
    req.AffectedSOPInstanceUID = instance.SOPInstanceUID
    context, payload = chosen(contexts, instance)
    if isinstance(payload, bytes):
        req.DataSet = BytesIO(payload)
    else:
        req._dataset_path = (payload, dataset_offset(payload))  # streamed from the file
    return _exchange(assoc, req, int(context.context_id or 0))


def chosen(
    contexts: list[PresentationContext], instance: StoredInstance
) -> tuple[PresentationContext, Payload]:
    """`payload_for`, with the reason logged when the instance cannot be sent."""
    try:
        if instance.purged:
            raise NotSent("purged: the spool retention policy deleted its file after delivery")
        return payload_for(contexts, instance)
    except (NotSent, OSError, ValueError) as err:
        log.warning(
            "qr.instance_not_sent",
            sop_class=str(instance.SOPClassUID),
            stored_syntax=instance.stored_syntax.name,
            accepted=sorted(
                {
                    str(cx.transfer_syntax[0].name)
                    for cx in contexts
                    if cx.abstract_syntax == instance.SOPClassUID
                }
            ),
            reason=str(err) if isinstance(err, NotSent) else type(err).__name__,
        )
        raise


def dataset_offset(path: Path) -> int:
    """Where the data set starts in a DICOM file: after its File Meta group."""
    with path.open("rb") as file:
        return _offset_in(file, path)


def _offset_in(file: BinaryIO, path: Path) -> int:
    head = file.read(144)
    # Preamble, DICM, then (0002,0000) UL 4 <length>, as the SCP and pydicom write the spool's.
    if len(head) == 144 and head[128:140] == b"DICM\x02\x00\x00\x00UL\x04\x00":
        return 144 + int.from_bytes(head[140:144], "little")
    return split_dataset(path)[1]  # another layout: pydicom reads the whole group


def write_c_store(
    sock: socket.socket, context_id: int, peer_max: int, command: bytes, payload: Payload
) -> None:
    """Write a C-STORE-RQ's command set and data set to `sock` as P-DATA-TF PDUs (the data set
    streamed from its file, in fragments that fit the peer's maximum PDU length)."""
    room = min(peer_max - 6, MAX_FRAGMENT) if peer_max > 6 else MAX_FRAGMENT
    start: list[bytes | memoryview] = [wire.p_data_command(context_id, command, peer_max)]
    if isinstance(payload, bytes):
        send_parts(sock, start + fragments(context_id, room, memoryview(payload), True))
        return
    try:  # an unreadable file fails this instance alone, before anything is sent
        file = payload.open("rb")
        offset = _offset_in(file, payload)
    except (OSError, ValueError) as err:
        raise NotSent(f"the spool file cannot be read: {type(err).__name__}") from err
    with file:
        remaining = os.fstat(file.fileno()).st_size - offset
        file.seek(offset)
        block = max(READ_BLOCK - READ_BLOCK % room, room)  # whole fragments but the last
        parts: list[bytes | memoryview] = start
        while True:
            data = file.read(min(block, remaining))
            remaining -= len(data)
            last = remaining <= 0 or not data
            send_parts(sock, parts + fragments(context_id, room, memoryview(data), last))
            if last:
                return
            parts = []


def fragments(context_id: int, room: int, data: memoryview, last: bool) -> list[bytes | memoryview]:
    """PDU headers and data of P-DATA-TF PDUs carrying `data` (`last`: it ends the data set)."""
    parts: list[bytes | memoryview] = []
    for start in range(0, max(len(data), 1), room):
        chunk = data[start : start + room]
        control = 0x02 if last and start + room >= len(data) else 0x00
        parts += (wire.p_data_header(context_id, len(chunk), control), chunk)
    return parts


def send_parts(sock: socket.socket, parts: Sequence[bytes | memoryview]) -> None:
    """Send `parts` in order: gathered by sendmsg where there is one (one system call for a
    block of PDUs instead of one per 16 KB fragment), else joined."""
    if not hasattr(sock, "sendmsg"):  # Windows
        sock.sendall(b"".join(parts))
        return
    views = [memoryview(part) for part in parts if len(part)]
    while views:
        sent = sock.sendmsg(views[:IOV_MAX])
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def _exchange(assoc: Association, req: C_STORE, context_id: int) -> Dataset:
    """Send the request and wait for its response (the end of pynetdicom's `send_c_store`)."""
    # Pause the reactor so that it does not take our response (for C-GET this thread is the
    # reactor's, serving the request). Its checkpoint is reactor_pause's.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(req, context_id)
        _, rsp = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    if rsp is None:
        assoc._handle_no_response()
        return Dataset()
    status: Dataset = assoc._check_received_status(rsp)
    return status


_original_send = Association.send_c_store
_installed = threading.Lock()


def _send_c_store(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
    if isinstance(dataset, StoredInstance):
        return send_stored(self, dataset, *args, **kwargs)
    return _original_send(self, dataset, *args, **kwargs)


def use_stored_sends() -> None:
    """Make `Association.send_c_store` send a `StoredInstance` as above (process-wide)."""
    with _installed:
        setattr(Association, "send_c_store", _send_c_store)  # noqa: B010
