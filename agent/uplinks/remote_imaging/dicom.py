"""Blocking C-STORE SCU (call it in a thread): one association reused across sends."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association

from agent.dicom_wakeups import close_wakeups, use_wakeups, wake_on_work
from agent.errors import AgentError
from agent.uplinks.remote_imaging.config import RemoteImagingConfig

LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_PAIRS = 40  # (SOP class, transfer syntax) pairs remembered: ≤ 120 of the 128 contexts


class AssociationError(AgentError):
    """No association could be made, or it broke; always worth trying again later."""


class NoContextError(AgentError):
    """The platform accepted no presentation context this instance can be sent with."""


class NoCodecError(AgentError):
    """No installed codec decodes the instance's compressed pixel data."""


def decompressed(ds: Dataset) -> Dataset:
    """The data set in Explicit VR Little Endian with native pixels (the same SOP Instance UID);
    unchanged when not compressed. NoCodecError when no installed codec decodes it."""
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if not syntax.is_compressed:
        return ds
    try:
        available = bool(get_decoder(syntax).is_available)
    except NotImplementedError:  # no decoder is written for it (the video syntaxes)
        available = False
    if not available:
        raise NoCodecError(f"no installed codec decodes {syntax.name}")
    try:
        ds.decompress(generate_instance_uid=False)
    except Exception as err:  # a codec's own error on data it cannot decode
        raise NoCodecError(f"{syntax.name} could not be decoded: {type(err).__name__}") from err
    return ds


def read_instance(path: Path) -> Dataset:
    """The file's meta and its elements before the pixel data (enough to check and route it)."""
    return dcmread(path, stop_before_pixels=True)


def file_tags(ds: Dataset) -> dict[str, str]:
    """PatientID, StudyInstanceUID, AccessionNumber as text ("" when absent)."""
    return {
        tag: str(ds.get(tag, "") or "")
        for tag in ("PatientID", "StudyInstanceUID", "AccessionNumber")
    }


class StoreScu:
    """Sends datasets to the platform's SCP, keeping the association between sends."""

    def __init__(self, config: RemoteImagingConfig, host: str) -> None:
        self.config = config
        self.host = host
        self.associations = 0  # opened so far (tests prove reuse with it)
        use_wakeups()  # process-wide, idempotent: only the threads _link_opened marks change
        # Process-wide as well; it only concerns a file path given to send_c_store.
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
        self._ae = AE(ae_title=config.calling_ae_title)
        self._ae.connection_timeout = config.connect_timeout
        self._ae.acse_timeout = config.acse_timeout
        self._ae.dimse_timeout = config.dimse_timeout
        self._ae.network_timeout = config.network_timeout
        self._ae.maximum_pdu_size = config.max_pdu
        self._lock = threading.Lock()
        self._assoc: Association | None = None
        self._known: dict[tuple[str, str], None] = {}  # pairs seen, oldest first
        self._pairs: frozenset[tuple[str, str]] = frozenset()  # requested on the current one
        self._last_used = 0.0
        self._message_id = 0

    def store(self, ds: Dataset, source: Path | Dataset) -> tuple[int | None, str]:
        """(status, error comment) of one C-STORE of `source`: a spool file (`ds` its header, as
        `read_instance` gives it) or a whole data set (`ds` itself, e.g. decompressed or made
        here); status None when no response came."""
        sop_class = str(ds.get("SOPClassUID") or ds.file_meta.MediaStorageSOPClassUID)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        with self._lock:
            reused = self._reusable((sop_class, syntax))
            if not reused:
                self._associate((sop_class, syntax))
            result = self._send((sop_class, syntax), source)
            if result[0] is None and reused:
                # A kept association the platform dropped meanwhile: one fresh try.
                self._drop()
                self._associate((sop_class, syntax))
                result = self._send((sop_class, syntax), source)
            if result[0] is None:
                self._drop()
            return result

    def close(self) -> None:
        """Release the association (abort it if the release is not answered)."""
        with self._lock:
            assoc, self._assoc = self._assoc, None
            if assoc is not None and assoc.is_established:
                assoc.release()
            if assoc is not None and assoc.is_alive():
                assoc.abort()

    @property
    def kept(self) -> bool:
        """Whether an association is being kept open for the next send."""
        return self._assoc is not None

    def close_if_idle(self) -> bool:
        """Release the association if unused for `association_idle` (before the network timeout
        would abort it); True if it did."""
        with self._lock:
            assoc = self._assoc
            if assoc is None or time.monotonic() - self._last_used < self.config.association_idle:
                return False
        self.close()
        return True

    def _reusable(self, pair: tuple[str, str]) -> bool:
        assoc = self._assoc
        if assoc is None:
            return False
        idle = time.monotonic() - self._last_used > self.config.association_idle
        if idle or not assoc.is_established or pair not in self._pairs:
            self._drop(release=assoc.is_established)
            return False
        return True

    def _associate(self, pair: tuple[str, str]) -> None:
        self._known.pop(pair, None)
        self._known[pair] = None
        while len(self._known) > MAX_PAIRS:
            del self._known[next(iter(self._known))]
        requested = context_pairs(list(self._known))
        assoc = self._ae.associate(
            self.host,
            self.config.dicom_port,
            contexts=[build_context(sop, UID(syntax)) for sop, syntax in requested],
            ae_title=self.config.called_ae_title,
            max_pdu=self.config.max_pdu,
            evt_handlers=[(evt.EVT_CONN_OPEN, _link_opened), (evt.EVT_CONN_CLOSE, _link_closed)],
        )
        self.associations += 1
        if not assoc.is_established:
            if assoc.is_rejected:
                raise AssociationError(f"association rejected by {self._peer()}")
            raise AssociationError(f"no association with {self._peer()} (refused or timed out)")
        self._assoc = assoc
        self._pairs = frozenset(requested)

    def _send(self, pair: tuple[str, str], source: Path | Dataset) -> tuple[int | None, str]:
        assoc = self._assoc
        assert assoc is not None
        self._message_id = self._message_id % 0xFFFF + 1
        exact = any(
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) == pair
            for cx in assoc.accepted_contexts
        )
        # The file's own syntax accepted: its bytes after the meta go out as they are, read in
        # chunks (no decode, no encode: most of a forwarded image's CPU). Otherwise the full
        # dataset, which pynetdicom converts to an accepted little-endian syntax.
        what = source if exact or isinstance(source, Dataset) else dcmread(source)
        try:
            status = assoc.send_c_store(what, msg_id=self._message_id)
        except ValueError as err:  # no accepted context for this SOP class / transfer syntax
            raise NoContextError(str(err)) from err
        except RuntimeError as err:  # the association ended under us
            raise AssociationError(f"association with {self._peer()} ended: {err}") from err
        self._last_used = time.monotonic()
        if "Status" not in status:
            return None, ""
        return int(status.Status), str(status.get("ErrorComment", "") or "")

    def _drop(self, release: bool = False) -> None:
        assoc, self._assoc = self._assoc, None
        self._pairs = frozenset()
        if assoc is None:
            return
        if release:
            assoc.release()
        if assoc.is_alive():
            assoc.abort()

    def _peer(self) -> str:
        return f"{self.config.called_ae_title}@{self.host}:{self.config.dicom_port}"


def _link_opened(event: Any) -> None:
    # Without TCP_NODELAY a C-STORE's last segment waits for the platform's delayed ACK (40 ms);
    # pynetdicom's polling threads were about half the CPU of a forwarded image (py-spy).
    wake_on_work(event.assoc)


def _link_closed(event: Any) -> None:
    close_wakeups(event.assoc)


def context_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Per SOP class its files' transfer syntaxes, then Explicit and Implicit LE (fallbacks).

    Each becomes a context of its own, so the platform cannot pick another transfer syntax and
    force a conversion: an accepted exact match sends the file's bytes as they are.
    """
    wanted: dict[tuple[str, str], None] = {}
    for sop_class, syntax in pairs:
        for candidate in (syntax, *LITTLE_ENDIAN):
            wanted[(sop_class, str(candidate))] = None
    return list(wanted)
