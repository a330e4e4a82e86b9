"""Issue 15, defect 3: a storage association whose reactor thread wakes late.

pynetdicom's reactor of the move's storage association could take the destination's C-STORE
response meant for the thread sending the sub-operations (the C-MOVE handler's): 60 s DIMSE
timeout, abort, and every remaining sub-operation failed. C-MOVE now sends over a
`store_link.StoreLink` (one thread, no reactor); the same race remains wherever a C-STORE is
sent on a pynetdicom association from another thread (the remote-imaging uplink, the demo's
modality), which `reactor_pause` closes. The test forces that interleaving (the reactor,
notified after one C-STORE, runs only once the next request is on the wire) instead of waiting
for a loaded machine to produce it; the stress version is in test_dicom_move_stress.py (slow).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    StoragePresentationContexts,
    _config,
    dimse_messages,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from agent import reactor_pause
from agent.imaging.study_index import StudyIndexReader
from drivers.dicom.qr import STUDY_ROOT_MOVE, QueryRetrieve
from drivers.dicom.scp import _configure_pynetdicom
from drivers.dicom.store import Spool
from drivers.dicom.store_link import LinkSettings, MovingAE
from tests.integration.test_dicom_qr import _free_port, _index, _instance

STUDY = "1.2.826.0.1.3680043.8.498.1501"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SERIES = f"{STUDY}.1"
SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]
IMAGES = 8
# A fault-injection bound, not a timing assertion: how long the hooked reactor waits for the
# sender's next request before going on (the fixed checkpoint never lets the sender send first).
HOLD = 0.5


@dataclass
class Archive:
    """A Q/R SCP over a study of `IMAGES` instances in several syntaxes, and its AE."""

    port: int
    ae: AE
    files: dict[str, Path]
    move_port: int


def study(state: Path, syntaxes: Sequence[str] = SYNTAXES) -> dict[str, Path]:
    """Index a one-series study of IMAGES instances, one stored transfer syntax after another."""
    attrs: dict[str, Any] = {"PatientID": "P1501", "PatientName": "Li^Lei"}
    attrs |= {"PatientBirthDate": "19800101", "PatientSex": "F", "StudyDate": "20240115"}
    attrs |= {"StudyTime": "090000", "AccessionNumber": "A1501", "Modality": "CT"}
    attrs |= {"SeriesNumber": 1}
    instances = [
        (
            _instance(STUDY, SERIES, f"{SERIES}.{n}", InstanceNumber=n, **attrs),
            syntaxes[n % len(syntaxes)],
        )
        for n in range(1, IMAGES + 1)
    ]
    return _index(state, cast(Any, instances))


def serve(state: Path, move_port: int, ae: MovingAE) -> tuple[ThreadedAssociationServer, int]:
    """Start the Q/R SCP of `state` on `ae`; C-MOVE to MOVESCU goes to `move_port`."""
    index = StudyIndexReader(state / "journal.db")
    destinations = {"MOVESCU": ("127.0.0.1", move_port)}
    qr = QueryRetrieve(index, destinations, "EDGE", state / "spool", LinkSettings.of(ae))
    for uid in qr.contexts():
        ae.add_supported_context(uid)
    for context in StoragePresentationContexts:  # C-GET: the SCU stores, with the SCP role
        ae.add_supported_context(
            str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=False, scp_role=True
        )
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=cast(Any, qr.handlers()))
    assert isinstance(server, ThreadedAssociationServer)
    return server, int(server.server_address[1])


@contextmanager
def serving(state: Path) -> Iterator[Archive]:
    """The archive of `study` served (as the SCP's start does it: _configure_pynetdicom)."""
    reactor_pause.install()
    files = study(state)
    ae = MovingAE("EDGE")
    ae.dimse_timeout = 5  # a lost response shows as a failure in 5 s, not 60
    move_port = _free_port()
    server, port = serve(state, move_port, ae)
    try:
        yield Archive(port, ae, files, move_port)
    finally:
        server.shutdown()


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with serving(tmp_path / "state") as served:
        yield served


class LateReactor:
    """Makes a requestor association's reactor wake late once, after its first sub-operation.

    When the sender sets the checkpoint after a response, the reactor is notified; here it then
    does not run until the sender's next request is on the wire, and its next look at the DIMSE
    queue comes once the peer's response is there, before the sender's own. Each step waits at
    most HOLD for what it waits for: a correct checkpoint never lets the sender send first.
    """

    def __init__(self, assoc: Association) -> None:
        self.armed = False
        self.fired = False
        self.sent = threading.Event()
        self.looked = threading.Event()
        checkpoint: Any = assoc._reactor_checkpoint
        dimse: Any = assoc.dimse
        wait, set_ = checkpoint.wait, checkpoint.set
        get_msg, send_msg = dimse.get_msg, dimse.send_msg

        def hooked_set() -> None:
            if threading.current_thread() is not assoc and not self.armed:
                self.armed = True  # the sender's first sub-operation is done
                self.sent.clear()
            set_()

        def hooked_wait(*args: Any) -> bool:
            result: bool = wait(*args)
            if self.armed and not self.fired:
                self.fired = True
                self.sent.wait(HOLD)  # the reactor gets the GIL late
            return result

        def hooked_send(msg: Any, context_id: int) -> None:
            send_msg(msg, context_id)
            self.sent.set()

        def hooked_get(block: bool = False) -> Any:
            if threading.current_thread() is not assoc:
                if self.armed and block:
                    self.looked.wait(HOLD)  # the sender's thread gets the GIL after the reactor
                return get_msg(block)
            if not self.fired or self.looked.is_set():
                return get_msg(block)
            if self.sent.is_set():
                for _ in range(int(HOLD / 0.01)):  # pynetdicom's queue has no arrival signal
                    if dimse.msg_queue.qsize():
                        break
                    self.looked.wait(0.01)
            try:
                return get_msg(block)
            finally:
                self.looked.set()

        checkpoint.set, checkpoint.wait = hooked_set, hooked_wait
        dimse.get_msg, dimse.send_msg = hooked_get, hooked_send


def destination(port: int) -> tuple[ThreadedAssociationServer, list[str]]:
    """A pynetdicom storage SCP on `port`, recording the SOP Instance UIDs it stores."""
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE("MOVESCU")
    for context in StoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert isinstance(server, ThreadedAssociationServer)
    return server, stored


def move(port: int, identifier: Dataset) -> Dataset:
    """C-MOVE `identifier` to MOVESCU with a pynetdicom SCU; the final response's status set."""
    ae = AE("MOVESCU")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    try:
        responses = [
            status for status, _ in assoc.send_c_move(identifier, "MOVESCU", STUDY_ROOT_MOVE)
        ]
    finally:
        assoc.release()
    return responses[-1]


def study_identifier() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = STUDY
    return ds


async def test_a_late_reactor_does_not_take_a_c_store_response(archive: Archive) -> None:
    server, stored = destination(archive.move_port)
    sender = AE("EDGE")
    sender.dimse_timeout = 5  # a stolen response shows as a failure in 5 s, not 60
    sender.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    images = [_instance(STUDY, SERIES, f"{SERIES}.9{n}", InstanceNumber=n) for n in range(IMAGES)]
    for ds in images:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    def send_all() -> tuple[LateReactor, list[int]]:
        assoc = sender.associate("127.0.0.1", archive.move_port, ae_title="MOVESCU")
        assert assoc.is_established
        hook = LateReactor(assoc)
        try:
            return hook, [int(assoc.send_c_store(ds).Status) for ds in images]
        finally:
            assoc.release()

    try:
        hook, statuses = await asyncio.to_thread(send_all)  # not the reactor's thread
    finally:
        server.shutdown()
    assert hook.fired  # the interleaving was forced
    assert statuses == [0x0000] * IMAGES
    assert sorted(stored) == sorted(str(ds.SOPInstanceUID) for ds in images)


async def test_a_move_sends_every_syntax_over_its_store_link(archive: Archive) -> None:
    server, stored = destination(archive.move_port)
    try:
        final = await asyncio.to_thread(move, archive.port, study_identifier())
    finally:
        server.shutdown()
    assert final.Status == 0x0000, final
    assert final.NumberOfCompletedSuboperations == IMAGES
    assert final.NumberOfFailedSuboperations == 0
    assert sorted(stored) == sorted(archive.files)


def test_the_scp_installs_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "STORE_RECV_CHUNKED_DATASET",
        "LOG_REQUEST_IDENTIFIERS",
        "LOG_RESPONSE_IDENTIFIERS",
    ):
        monkeypatch.setattr(_config, name, getattr(_config, name))
    monkeypatch.setattr(
        dimse_messages, "NamedTemporaryFile", vars(dimse_messages)["NamedTemporaryFile"]
    )
    unpatched = getattr(Association.__init__, "__wrapped__", Association.__init__)
    monkeypatch.setattr(Association, "__init__", unpatched)
    _configure_pynetdicom(Spool(tmp_path, reserve_mb=0), "memory")
    assoc = Association(AE("X"), "requestor")
    assert isinstance(assoc._reactor_checkpoint, reactor_pause.ReactorCheckpoint)
