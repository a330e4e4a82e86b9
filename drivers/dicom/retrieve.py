"""C-STORE sub-operations of C-GET and C-MOVE: the stored bytes as they are, else a conversion.

pynetdicom's Q/R service sends what the handler yields with `Association.send_c_store`, which
re-encodes a Dataset through pydicom (dropping group lengths: not the bytes that were stored).
A `StoredInstance` is sent instead as the spool file's data set, streamed from disk after its
file meta, when the peer accepted the stored syntax; otherwise it is converted to the first
accepted syntax it can be converted to. When none can, the sub-operation fails with a reason and
pynetdicom counts it (Failed SOP Instance UID List): the other instances still go.
"""

from __future__ import annotations

import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.presentation import PresentationContext

log = structlog.get_logger(__name__)

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
    """Whether a data set in `stored` can be sent in `target` here (no image codec needed)."""
    return not stored.is_compressed and not target.is_compressed  # deflate is not "compressed"


def encoded(instance: StoredInstance, target: UID) -> bytes:
    """The instance's data set re-encoded in `target`; NotSent if that is not possible."""
    stored = instance.stored_syntax
    if not converts(stored, target):
        raise NotSent(f"no conversion from {stored.name} to {target.name}")
    ds = dcmread(instance.path)
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
    return _exchange(assoc, req, int(context.context_id or 0))


def _as_stored(
    contexts: list[PresentationContext], instance: StoredInstance, req: C_STORE
) -> PresentationContext | None:
    for cx in contexts:
        if cx.transfer_syntax[0] == instance.stored_syntax:
            _, offset = split_dataset(instance.path)
            req._dataset_path = (instance.path, offset)  # streamed from the file, as stored
            return cx
    return None


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


def _exchange(assoc: Association, req: C_STORE, context_id: int) -> Dataset:
    """Send the request and wait for its response (the end of pynetdicom's `send_c_store`)."""
    # Pause the reactor, as pynetdicom does, so that it does not take our response.
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
