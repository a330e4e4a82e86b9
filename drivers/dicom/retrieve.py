"""C-STORE sub-operations of C-GET and C-MOVE: the stored bytes as they are, else a conversion.

pynetdicom's Q/R service sends what the handler yields with `Association.send_c_store`, which
re-encodes a Dataset through pydicom (dropping group lengths: not the bytes that were stored).
A `StoredInstance` is sent instead as the spool file's data set, streamed from disk after its
file meta, when the peer accepted the stored syntax; otherwise it is converted to the first
accepted syntax it can be converted to. When none can, the sub-operation fails with a reason and
pynetdicom counts it (Failed SOP Instance UID List): the other instances still go.
"""

from __future__ import annotations

import os
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.presentation import PresentationContext

from agent.dicom_wakeups import Wakeups
from drivers.dicom import wire

log = structlog.get_logger(__name__)

MAX_FRAGMENT = 1 << 20  # a peer without a PDU limit still gets the data set in 1 MiB PDUs
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
    contexts = [
        cx
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == instance.SOPClassUID and cx.as_scu
    ]
    req = C_STORE()
    req.MessageID = msg_id
    req.Priority = priority
    req.MoveOriginatorApplicationEntityTitle = originator_aet
    req.MoveOriginatorMessageID = originator_id
    req.AffectedSOPClassUID = instance.SOPClassUID
    req.AffectedSOPInstanceUID = instance.SOPInstanceUID
    try:
        context = _as_stored(contexts, instance, req) or _converted(contexts, instance, req)
    except (NotSent, OSError, ValueError) as err:
        log.warning(
            "qr.instance_not_sent",
            sop_class=str(instance.SOPClassUID),
            stored_syntax=instance.stored_syntax.name,
            accepted=sorted({str(cx.transfer_syntax[0].name) for cx in contexts}),
            reason=str(err) if isinstance(err, NotSent) else type(err).__name__,
        )
        raise
    lean = assoc.is_requestor and req._dataset_path is not None
    return _exchange(assoc, req, int(context.context_id or 0), lean)


def _as_stored(
    contexts: list[PresentationContext], instance: StoredInstance, req: C_STORE
) -> PresentationContext | None:
    for cx in contexts:
        if cx.transfer_syntax[0] == instance.stored_syntax:
            offset = dataset_offset(instance.path)
            req._dataset_path = (instance.path, offset)  # streamed from the file, as stored
            return cx
    return None


def dataset_offset(path: Path) -> int:
    """Where the data set starts in a DICOM file: after its File Meta group."""
    with path.open("rb") as file:
        head = file.read(144)
    # Preamble, DICM, then (0002,0000) UL 4 <length>, as the SCP and pydicom write the spool's.
    if len(head) == 144 and head[128:140] == b"DICM\x02\x00\x00\x00UL\x04\x00":
        return 144 + int.from_bytes(head[140:144], "little")
    return split_dataset(path)[1]  # another layout: pydicom reads the whole group


def _write_stored(assoc: Association, req: C_STORE, context_id: int) -> None:
    """Write the C-STORE-RQ and the file's data set straight to the socket, as P-DATA-TF PDUs.

    pynetdicom queues each PDU to its DUL thread (a state machine step and a thread switch per
    16 KB fragment for a dcmtk peer): for a small image that costs more than the sending. Only on
    an association the agent requested for a C-MOVE, where this thread is the only one with
    anything to send while a sub-operation is under way (the DUL thread only reads, and only
    sends on release or abort, which cannot happen while we wait for the response).
    """
    assert req._dataset_path is not None
    originator = None
    if req.MoveOriginatorApplicationEntityTitle is not None:
        originator = (
            str(req.MoveOriginatorApplicationEntityTitle),
            req.MoveOriginatorMessageID or 0,
        )
    command = wire.encode_store_request(
        int(req.MessageID or 0),
        str(req.AffectedSOPClassUID),
        str(req.AffectedSOPInstanceUID),
        int(req.Priority),
        originator,
    )
    path, offset = (
        req._dataset_path if isinstance(req._dataset_path, tuple) else (req._dataset_path, 0)
    )
    peer_max = int(assoc.acceptor.maximum_length or 0)
    room = min(peer_max - 6, MAX_FRAGMENT) if peer_max > 6 else MAX_FRAGMENT
    transport = assoc.dul.socket
    sock = None if transport is None else transport.socket
    if sock is None:
        raise ConnectionResetError("the association's connection is closed")
    sock.sendall(wire.p_data_command(context_id, command, peer_max))
    with Path(path).open("rb") as file:
        remaining = os.fstat(file.fileno()).st_size - offset
        file.seek(offset)
        while True:
            chunk = file.read(min(room, remaining))
            remaining -= len(chunk)
            last = remaining <= 0 or not chunk
            sock.sendall(wire.p_data_header(context_id, len(chunk), 0x02 if last else 0x00) + chunk)
            if last:
                return


def _converted(
    contexts: list[PresentationContext], instance: StoredInstance, req: C_STORE
) -> PresentationContext:
    for cx in contexts:
        if converts(instance.stored_syntax, cx.transfer_syntax[0]):
            req.DataSet = BytesIO(encoded(instance, cx.transfer_syntax[0]))
            return cx
    if not contexts:
        raise NotSent("the peer accepted no context for the SOP class")
    raise NotSent("no accepted transfer syntax the stored one converts to")


def _exchange(assoc: Association, req: C_STORE, context_id: int, lean: bool) -> Dataset:
    """Send the request and wait for its response (the end of pynetdicom's `send_c_store`)."""
    # Pause the reactor so that it does not take our response: for C-GET it is this thread
    # (already serving the request), for C-MOVE the storage association's own thread. Its
    # checkpoint is reactor_pause's: from another thread, clear() returns once it is parked.
    if threading.current_thread() is not assoc:
        waker = getattr(getattr(assoc, "_edge_wait", None), "__self__", None)
        if isinstance(waker, Wakeups):
            waker.message.set()  # the reactor waits for a message: it parks now, not in 1 ms
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        if lean:
            _write_stored(assoc, req, context_id)
        else:
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
