"""C-MOVE's storage association (`store_link`) when the destination is not a well-behaved peer:
not listening, refusing the association, failing one image, aborting half-way. Each outcome is
counted in the final C-MOVE response; nothing hangs and the other sub-operations still go."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer

from drivers.dicom.qr import STUDY_ROOT_MOVE
from tests.integration.test_dicom_move_race import (
    IMAGES,
    Archive,
    move,
    serving,
    study_identifier,
)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with serving(tmp_path / "state") as served:
        yield served


def scp(port: int, on_store: Callable[[Any], int], ae_title: str = "MOVESCU") -> Any:
    """A pynetdicom storage SCP on `port` that only accepts calls to `ae_title`."""
    ae = AE(ae_title)
    ae.require_called_aet = True
    for context in StoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert isinstance(server, ThreadedAssociationServer)
    return server


async def moved(archive: Archive) -> Dataset:
    return await asyncio.to_thread(move, archive.port, study_identifier())


def move_failed_list(port: int) -> list[str]:
    """C-MOVE the study to MOVESCU; the final response's Failed SOP Instance UID List."""
    ae = AE("MOVESCU")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    try:
        *_, (_, identifier) = assoc.send_c_move(study_identifier(), "MOVESCU", STUDY_ROOT_MOVE)
    finally:
        assoc.release()
    assert identifier is not None
    failed = identifier.FailedSOPInstanceUIDList  # one UID: a str, not a list
    return [failed] if isinstance(failed, str) else list(failed)


async def test_an_unreachable_destination_is_move_destination_unknown(archive: Archive) -> None:
    final = await moved(archive)  # nothing listens on archive.move_port
    assert final.Status == 0xA801


async def test_a_refused_association_is_move_destination_unknown(archive: Archive) -> None:
    server = scp(archive.move_port, lambda event: 0x0000, ae_title="SOMEONE")
    try:
        final = await moved(archive)
    finally:
        server.shutdown()
    assert final.Status == 0xA801


async def test_an_image_the_destination_refuses_is_counted_failed(archive: Archive) -> None:
    refused = sorted(archive.files)[3]

    def on_store(event: Any) -> int:
        return 0xA700 if event.request.AffectedSOPInstanceUID == refused else 0x0000

    server = scp(archive.move_port, on_store)
    try:
        final = await moved(archive)
        failed = await asyncio.to_thread(move_failed_list, archive.port)
    finally:
        server.shutdown()
    assert final.Status == 0xB000  # sub-operations complete, one failed
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (
        IMAGES - 1,
        1,
    )
    assert failed == [refused]


async def test_a_destination_aborting_fails_the_rest_without_waiting(archive: Archive) -> None:
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(str(event.request.AffectedSOPInstanceUID))
        if len(stored) == 2:
            event.assoc.abort()
        return 0x0000

    server = scp(archive.move_port, on_store)
    try:
        final = await moved(archive)  # the DIMSE timeout is 5 s: a hang would fail the move
    finally:
        server.shutdown()
    completed, failed = final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations
    assert (completed, failed) == (1, IMAGES - 1)
    assert final.Status in (0xA702, 0xB000), final
