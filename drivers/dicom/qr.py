"""Query/Retrieve SCP over the study index: C-FIND, C-MOVE, C-GET, patient and study root.

The index and its queries are the imaging domain's: the SCP is given a `StudyIndex`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.dimse_primitives import C_MOVE
from pynetdicom.presentation import PresentationContext

from agent.logs import peer_text
from agent.vocabulary.study_index import (
    PURGED_PATH,
    UNABLE,
    BadIdentifier,
    IndexUnavailable,
    Instance,
    Matches,
    StudyIndex,
)
from drivers.dicom.retrieve import StoredInstance, use_stored_sends
from drivers.dicom.store_link import LinkSettings

log = structlog.get_logger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT = {PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET}
PENDING, CANCEL = 0xFF00, 0xFE00
OUT_OF_RESOURCES = 0xA700
MAX_CONTEXTS = 128
PENDING_INTERVAL = 0.25  # seconds between a C-MOVE's optional Pending responses
VERIFICATION = "1.2.840.10008.1.1"  # what a failed move still has to associate with

Handler = Callable[..., Any]
Answer = TypeVar("Answer")


def _failure(status: int, comment: str, offending: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    if offending is not None:
        ds.OffendingElement = [offending]
    return ds


class QueryRetrieve:
    """Answers Q/R requests from the study index (read-only) and sends the spool's files."""

    def __init__(
        self,
        index: StudyIndex,
        destinations: Mapping[str, tuple[str, int]],
        ae_title: str,
        spool_dir: Path,
        link: LinkSettings,
    ) -> None:
        self.link = link  # how C-MOVE's storage associations are requested (store_link)
        self.index = index
        self.destinations = {ae.strip(): addr for ae, addr in destinations.items()}
        self.ae_title = ae_title
        self.spool_dir = spool_dir

    def contexts(self) -> list[str]:
        """The Q/R SOP classes to support as SCP (Patient and Study Root FIND/MOVE/GET)."""
        return [*sorted(PATIENT_ROOT), STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET]

    def handlers(self) -> list[tuple[Any, Handler]]:
        """The pynetdicom event handlers to bind on the AE's server."""
        use_stored_sends()  # what `_send` yields is sent by `retrieve`
        return [
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
        ]

    def _ask(self, event: Any, ask: Callable[..., Answer], unavailable: int) -> Answer | Dataset:
        """`ask(identifier, patient_root=…)` of the index, or the failure to answer with."""
        try:
            identifier: Dataset = event.identifier
            patient_root = event.context.abstract_syntax in PATIENT_ROOT
            return ask(identifier, patient_root=patient_root)
        except BadIdentifier as err:
            return _failure(err.status, str(err), err.tag)
        except IndexUnavailable as err:
            log.warning("qr.index_unavailable", error=str(err))
            return _failure(unavailable, "study index unavailable")
        except Exception as err:  # an identifier pydicom cannot decode
            return _failure(UNABLE, f"cannot decode identifier: {type(err).__name__}")

    def on_find(self, event: Any) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """EVT_C_FIND: one pending response per match, only the requested keys."""
        found: Matches | Dataset = self._ask(event, self.index.find, OUT_OF_RESOURCES)
        if isinstance(found, Dataset):
            yield found, None
            return
        log.info("qr.find", level=found.level, matches=len(found.rows), calling_ae=_calling(event))
        for row in found.rows:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, found.response(row, self.ae_title)

    def on_move(self, event: Any) -> Iterator[Any]:
        """EVT_C_MOVE: the destination, the number of instances, then each instance's dataset."""
        destination = self.destinations.get(str(event.move_destination).strip())
        if destination is None:
            unknown = peer_text(str(event.move_destination))
            log.warning("qr.move_destination_unknown", destination=unknown)
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        matches = self._matches(event)
        if isinstance(matches, Dataset):
            verification = [build_context(VERIFICATION)]
            yield (*destination, {"contexts": verification, "store_link": self.link})
            yield 1  # the status must follow a sub-operation count; nothing is sent
            yield matches, None
            return
        fewer_pending_responses(event.assoc)
        yield (*destination, {"contexts": _storage_contexts(matches), "store_link": self.link})
        yield from self._send(event, matches, "move")

    def on_get(self, event: Any) -> Iterator[Any]:
        """EVT_C_GET: the number of instances, then each instance's dataset on the same link."""
        matches = self._matches(event)
        if isinstance(matches, Dataset):
            yield 1
            yield matches, None
            return
        yield from self._send(event, matches, "get")

    def _matches(self, event: Any) -> list[Instance] | Dataset:
        """The instances the request names, or the failure to answer with."""
        return self._ask(event, self.index.instances, 0xA701)

    def _send(self, event: Any, matches: list[Instance], op: str) -> Iterator[Any]:
        log.info(f"qr.{op}", instances=len(matches), calling_ae=_calling(event))
        yield len(matches)
        for sop_uid, sop_class, syntax, relative in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            # Not read here: `retrieve` streams the file's data set as stored, or converts it.
            stored = StoredInstance(self.spool_dir / relative, sop_class, sop_uid, syntax)
            stored.purged = relative == PURGED_PATH  # a failed sub-operation, said why
            yield PENDING, stored


def _storage_contexts(matches: list[Instance]) -> list[PresentationContext]:
    """Per SOP class: one context per stored transfer syntax alone (so the file goes as stored
    when the destination accepts it), then one offering the uncompressed syntaxes (converted)."""
    syntaxes: dict[str, list[str]] = {}
    for _uid, sop_class, syntax, _path in matches:
        found = syntaxes.setdefault(sop_class, [])
        if syntax not in found:
            found.append(syntax)
    contexts = []
    for sop_class, found in syntaxes.items():
        for syntax in found:
            contexts.append(build_context(sop_class, syntax))
        contexts.append(build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return contexts[:MAX_CONTEXTS]


def fewer_pending_responses(assoc: Any) -> None:
    """Send a C-MOVE's Pending responses at most every PENDING_INTERVAL on `assoc`.

    pynetdicom sends one after every sub-operation: a pydicom encoding and a hand-over to the
    association's DUL thread that cost a study of small images a third of its time. PS3.4
    C.4.2.1.5 makes them optional; the final response carries every count. The mover still
    sees progress several times a second.
    """
    dimse = assoc.dimse
    if getattr(dimse, "_edge_fewer_pending", False):
        return
    send, last = dimse.send_msg, [-PENDING_INTERVAL]

    def send_msg(primitive: Any, context_id: int) -> None:
        if isinstance(primitive, C_MOVE) and primitive.Status == PENDING:
            now = time.monotonic()
            if now - last[0] < PENDING_INTERVAL:
                return
            last[0] = now
        send(primitive, context_id)

    dimse.send_msg, dimse._edge_fewer_pending = send_msg, True


def _calling(event: Any) -> str:
    return peer_text(str(event.assoc.requestor.ae_title).strip())
