"""Claims of docs/dicom-conformance.md that no other test makes: associations, failed sub-ops.

Both acceptors (the lean path and pynetdicom) must answer alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from agent.imaging.study_index import StudyIndexReader
from drivers.dicom.qr import (
    PATIENT_ROOT,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)
from drivers.dicom.scp import DicomScp, DicomScpConfig
from drivers.dicom.store_link import MovingAE
from drivers.dicom.syntaxes import UNCOMPRESSED
from tests.integration.test_dicom_move_race import (
    IMAGES,
    destination,
    serve,
    study,
    study_identifier,
)
from tests.integration.test_dicom_qr import _free_port
from tests.integration.test_dicom_scp import RecordingContext, make_scp, serving

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.3811.3.0.4"  # pynetdicom 3.0.4's
IMPLEMENTATION_VERSION = "PYNETDICOM_304"


def associate(port: int, called: str, abstract_syntaxes: list[str]) -> dict[str, Any]:
    """Associate as PACS01 calling `called`; what the A-ASSOCIATE-AC said, then release."""
    ae = AE("PACS01")
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        echo = int(assoc.send_c_echo().Status) if Verification in abstract_syntaxes else None
        return {
            "accepted": {str(c.abstract_syntax) for c in assoc.accepted_contexts},
            "rejected": {str(c.abstract_syntax) for c in assoc.rejected_contexts},
            "uid": str(assoc.acceptor.implementation_class_uid),
            "version": assoc.acceptor.implementation_version_name,
            "max_pdu": assoc.acceptor.maximum_length,
            "echo": echo,
        }
    finally:
        assoc.release()


@pytest.mark.parametrize("fast_store", [True, False], ids=["lean", "pynetdicom"])
async def test_every_storage_class_any_called_title_and_the_implementation(
    tmp_path: Path, fast_store: bool
) -> None:
    scp = make_scp(fast_store=fast_store)
    storage = [str(c.abstract_syntax) for c in AllStoragePresentationContexts]
    async with serving(scp, RecordingContext(tmp_path)) as port:
        first = await asyncio.to_thread(
            associate, port, "ANY_TITLE", [Verification, *storage[:120]]
        )
        rest = await asyncio.to_thread(associate, port, "EDGE", storage[120:])
    assert first["echo"] == 0x0000
    assert first["accepted"] | rest["accepted"] == {Verification, *storage}
    assert not first["rejected"] and not rest["rejected"]
    assert len(storage) == 170
    assert (first["uid"], first["version"]) == (IMPLEMENTATION_UID, IMPLEMENTATION_VERSION)
    assert first["max_pdu"] == 131_072


async def test_query_retrieve_and_verification_take_the_uncompressed_syntaxes(
    tmp_path: Path,
) -> None:
    config = {"type": "dicom_scp", "ae_title": "EDGE", "host": "127.0.0.1", "port": 0}
    config |= {"allowed_calling_aes": ["PACS01"], "min_free_mb": 0, "query_retrieve": True}
    scp = DicomScp("scp", DicomScpConfig.model_validate(config), StudyIndexReader)
    models = [*sorted(PATIENT_ROOT), STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET, Verification]
    accepted: dict[str, set[str]] = {}
    async with serving(scp, RecordingContext(tmp_path)) as port:
        for syntax in UNCOMPRESSED:
            accepted[syntax] = await asyncio.to_thread(accepted_with, port, models, syntax)
    assert accepted == {syntax: set(models) for syntax in UNCOMPRESSED}


def accepted_with(port: int, abstract_syntaxes: list[str], syntax: str) -> set[str]:
    """The abstract syntaxes accepted when each is proposed with `syntax` only."""
    ae = AE("PACS01")
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    try:
        return {str(c.abstract_syntax) for c in assoc.accepted_contexts}
    finally:
        assoc.release()


def final_move_response(port: int) -> Dataset:
    """C-MOVE the race test's study to MOVESCU; the final response (status and identifier)."""
    ae = AE("MOVESCU")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    try:
        *_, (status, identifier) = assoc.send_c_move(study_identifier(), "MOVESCU", STUDY_ROOT_MOVE)
    finally:
        assoc.release()
    if identifier is not None:
        status.FailedSOPInstanceUIDList = identifier.get("FailedSOPInstanceUIDList", [])
    return status


async def test_a_missing_spool_file_fails_that_sub_operation_only(tmp_path: Path) -> None:
    files = study(tmp_path / "state", [ExplicitVRLittleEndian])
    lost = sorted(files)[3]
    files[lost].unlink()
    move_port = _free_port()
    server, port = serve(tmp_path / "state", move_port, MovingAE("EDGE"))
    receiver, stored = destination(move_port)
    try:
        some = await asyncio.to_thread(final_move_response, port)
        for path in files.values():
            path.unlink(missing_ok=True)
        every = await asyncio.to_thread(final_move_response, port)
    finally:
        receiver.shutdown()
        server.shutdown()
    assert (some.Status, some.NumberOfFailedSuboperations) == (0xB000, 1)
    assert some.NumberOfCompletedSuboperations == IMAGES - 1
    assert some.FailedSOPInstanceUIDList == lost
    assert sorted(stored) == sorted(set(files) - {lost})
    assert (every.Status, every.NumberOfFailedSuboperations) == (0xA702, IMAGES)
