"""The insurance front-end's Portal AE (seed 004 §4.2 方式一): C-ECHO, then a study-level C-MOVE
to itself, the images received by its own storage SCP (data sets as they came, byte for byte)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from agent.dicom_wakeups import use_wakeups
from agent.simulators.remote_imaging_scp import _dataset_bytes


@dataclass
class Pulled:
    """What one C-MOVE brought: the data sets by SOP Instance UID, and the final status."""

    status: int | None = None
    echo: int | None = None
    failed: int = 0
    images: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Portal:
    """The Portal AE and the port its storage SCP listens on (the agent's move destination)."""

    ae_title: str
    port: int


def pull_study(host: str, port: int, called_ae: str, study_uid: str, portal: Portal) -> Pulled:
    """C-ECHO, then C-MOVE the study to the Portal AE, received by its own storage SCP.
    Blocking: run it in a thread."""
    pulled = Pulled()
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        with lock:
            pulled.images[str(event.request.AffectedSOPInstanceUID)] = _dataset_bytes(event)
        return 0x0000

    use_wakeups()  # with reactor_pause: our requests' responses come back to this thread
    ae = AE(portal.ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    server = ae.start_server(
        ("127.0.0.1", portal.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert server is not None
    try:
        assoc = ae.associate(host, port, ae_title=called_ae)
        if not assoc.is_established:
            return pulled
        try:
            echo = assoc.send_c_echo()
            pulled.echo = int(echo.Status) if "Status" in echo else None
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study_uid
            for status, _ in assoc.send_c_move(
                query, portal.ae_title, StudyRootQueryRetrieveInformationModelMove
            ):
                if status is not None and "Status" in status:
                    pulled.status = int(status.Status)
                    pulled.failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
        finally:
            assoc.release()
    finally:
        server.shutdown()
    return pulled
