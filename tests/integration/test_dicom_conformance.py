"""Claims of docs/dicom-conformance.md that no other test makes: what an association gets.

Both acceptors (the lean path and pynetdicom) must answer alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

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
