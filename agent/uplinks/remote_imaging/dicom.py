"""C-STORE sender: one association reused across sends; blocking (call it in a thread), but a
kept association's small files are sent with `store_on_loop` from the event loop.

The association is the driver's lean storage link (drivers/dicom/forward.py), handed to the
uplink by the wiring as a `Forwarding`: a platform never imports a driver.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from agent.errors import AgentError
from agent.uplinks.remote_imaging.config import RemoteImagingConfig

LITTLE_ENDIAN = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_PAIRS = 40  # (SOP class, transfer syntax) pairs remembered: ≤ 120 of the 128 contexts
EXPECTED = ("PatientID", "StudyInstanceUID", "AccessionNumber")
_HEADER_KEYS = {"PatientID": "patient_id", "StudyInstanceUID": "study_uid",
                "AccessionNumber": "accession_number"}  # fmt: skip


class AssociationError(AgentError):
    """No association could be made, or it broke; always worth trying again later."""


class NoContextError(AgentError):
    """The platform accepted no presentation context this instance can be sent with."""


class NoCodecError(AgentError):
    """No installed codec decodes the instance's compressed pixel data."""


class Link(Protocol):
    """A storage association (drivers.dicom.forward.ForwardLink)."""

    @property
    def is_open(self) -> bool: ...

    def store(
        self, instance: tuple[str, str, str], source: Path | Dataset, msg_id: int
    ) -> tuple[int, str]:
        """The response's (Status, ErrorComment); LookupError: no context; OSError: broke."""

    async def store_on_loop(
        self, instance: tuple[str, str, str], raw: bytes, msg_id: int
    ) -> tuple[int, str] | None:
        """`store` of a spool file's bytes from the event loop; None: nothing sent, `store`."""

    def release(self) -> None: ...

    def abort(self) -> None: ...


class Forwarding(Protocol):
    """Header reads and storage associations (drivers.dicom.forward.Forwarding)."""

    def header(self, path: Path) -> dict[str, Any]:
        """transfer_syntax, sop_class_uid, sop_instance_uid, patient_id, study_uid,
        accession_number of a file; ValueError when it is not readable DICOM."""

    def small(self, path: Path) -> tuple[dict[str, Any], bytes] | None:
        """`header` and the bytes of a file small enough to send from the event loop."""

    def associate(
        self,
        address: tuple[str, int],
        called_ae: str,
        calling_ae: str,
        pairs: list[tuple[str, str]],
        *,
        timeouts: tuple[float, float, float],
        max_pdu: int,
    ) -> Link:
        """An established association; OSError with the reason when refused or unreachable."""


def decompressed(ds: Dataset) -> Dataset:
    """The data set in Explicit VR Little Endian with native pixels (the same SOP Instance UID);
    unchanged when not compressed. NoCodecError when no installed codec decodes it."""
    from pydicom.pixels.decoders.base import get_decoder  # the codecs: only when decompressing

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


def file_tags(header: dict[str, Any]) -> dict[str, str]:
    """PatientID, StudyInstanceUID, AccessionNumber of a `Forwarding.header` ("" when absent)."""
    return {tag: str(header.get(key) or "") for tag, key in _HEADER_KEYS.items()}


def identity(ds: Dataset) -> tuple[str, str, str]:
    """(SOP class, SOP instance, transfer syntax) of a data set with its file meta."""
    meta = ds.file_meta
    sop_class = str(ds.get("SOPClassUID") or meta.MediaStorageSOPClassUID)
    sop_instance = str(ds.get("SOPInstanceUID") or meta.MediaStorageSOPInstanceUID)
    return sop_class, sop_instance, str(meta.TransferSyntaxUID)


class StoreScu:
    """Sends instances to the platform's SCP, keeping the association between sends."""

    def __init__(self, config: RemoteImagingConfig, host: str, forwarding: Forwarding) -> None:
        self.config = config
        self.host = host
        self.forwarding = forwarding
        self.associations = 0  # opened so far (tests prove reuse with it)
        self._lock = threading.Lock()
        self._link: Link | None = None
        self._known: dict[tuple[str, str], None] = {}  # pairs seen, oldest first
        self._pairs: frozenset[tuple[str, str]] = frozenset()  # requested on the current one
        self._last_used = 0.0
        self._message_id = 0

    def store(
        self, instance: tuple[str, str, str], source: Path | Dataset
    ) -> tuple[int | None, str]:
        """(status, error comment) of one C-STORE of `source`: a spool file as stored or a whole
        data set, `instance` its (SOP class, SOP instance, transfer syntax); status None when no
        response came."""
        pair = (instance[0], instance[2])
        with self._lock:
            reused = self._reusable(pair)
            if not reused:
                self._associate(pair)
            try:
                return self._send(instance, source)
            except AssociationError:
                if not reused:
                    raise
            # A kept association the platform dropped meanwhile: one fresh try.
            self._drop()
            self._associate(pair)
            return self._send(instance, source)

    async def store_on_loop(
        self, instance: tuple[str, str, str], raw: bytes
    ) -> tuple[int | None, str] | None:
        """`store` on the event loop when the kept association fits and is free; None when
        nothing was sent (no such association, a large or converted file, or it broke: `store`
        then opens a fresh one, as for a kept association that broke)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            link = self._link
            idle = time.monotonic() - self._last_used > self.config.association_idle
            if (
                link is None
                or idle
                or not link.is_open
                or (instance[0], instance[2]) not in (self._pairs)
            ):
                return None
            self._message_id = self._message_id % 0xFFFF + 1
            try:
                found = await link.store_on_loop(instance, raw, self._message_id)
            except OSError:
                self._drop()  # broke: closed, nothing left to release
                return None
            if found is not None:
                self._last_used = time.monotonic()
            return found
        finally:
            self._lock.release()

    def close(self) -> None:
        """Release the association (abort it if the release is not answered)."""
        with self._lock:
            self._drop(release=True)

    @property
    def kept(self) -> bool:
        """Whether an association is being kept open for the next send."""
        return self._link is not None

    def close_if_idle(self) -> bool:
        """Release the association if unused for `association_idle` (before the network timeout
        would abort it); True if it did."""
        with self._lock:
            link = self._link
            if link is None or time.monotonic() - self._last_used < self.config.association_idle:
                return False
            self._drop(release=True)
            return True

    def _reusable(self, pair: tuple[str, str]) -> bool:
        link = self._link
        if link is None:
            return False
        idle = time.monotonic() - self._last_used > self.config.association_idle
        if idle or not link.is_open or pair not in self._pairs:
            self._drop(release=link.is_open)
            return False
        return True

    def _associate(self, pair: tuple[str, str]) -> None:
        self._known.pop(pair, None)
        self._known[pair] = None
        while len(self._known) > MAX_PAIRS:
            del self._known[next(iter(self._known))]
        requested = context_pairs(list(self._known))
        config = self.config
        self.associations += 1
        try:
            self._link = self.forwarding.associate(
                (self.host, config.dicom_port),
                config.called_ae_title,
                config.calling_ae_title,
                requested,
                timeouts=(config.connect_timeout, config.acse_timeout, config.dimse_timeout),
                max_pdu=config.max_pdu,
            )
        except OSError as err:
            raise AssociationError(f"no association with {self._peer()}: {err}") from err
        self._pairs = frozenset(requested)
        self._last_used = time.monotonic()

    def _send(
        self, instance: tuple[str, str, str], source: Path | Dataset
    ) -> tuple[int | None, str]:
        link = self._link
        assert link is not None
        self._message_id = self._message_id % 0xFFFF + 1
        try:
            status, comment = link.store(instance, source, self._message_id)
        except LookupError as err:  # no accepted context for this SOP class / transfer syntax
            raise NoContextError(str(err)) from err
        except OSError as err:
            if link.is_open:  # the file, not the association: nothing was sent
                raise
            self._drop()
            raise AssociationError(f"association with {self._peer()} ended: {err}") from err
        self._last_used = time.monotonic()
        return status, comment

    def _drop(self, release: bool = False) -> None:
        link, self._link = self._link, None
        self._pairs = frozenset()
        if link is None:
            return
        if release and link.is_open:
            link.release()
        if link.is_open:
            link.abort()

    def _peer(self) -> str:
        return f"{self.config.called_ae_title}@{self.host}:{self.config.dicom_port}"


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
