"""Q/R SCP over a real index: dcmtk findscu/movescu/getscu and a pynetdicom SCU against it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts
from pynetdicom.transport import ThreadedAssociationServer

from agent.imaging.study_index import StudyIndexReader
from agent.journal.database import open_database
from drivers.dicom import convert
from drivers.dicom.qr import STUDY_ROOT_FIND, STUDY_ROOT_MOVE, QueryRetrieve
from drivers.dicom.sidecar import parse_sidecar
from drivers.dicom.store_link import LinkSettings, MovingAE
from tests.peers import dcmtk, run_tool
from tests.unit.test_dicom_convert import SIDECAR, TZ, make_jpeg

STUDY_A, STUDY_B = "1.2.826.0.1.3680043.8.498.901", "1.2.826.0.1.3680043.8.498.902"
SERIES_A, SERIES_B = f"{STUDY_A}.1", f"{STUDY_B}.1"
NAME_P1 = "Wang^Wei=王^伟"


@dataclass
class Peer:
    """The Q/R SCP under test and what its index holds."""

    port: int
    state: Path
    files: dict[str, Path]  # SOP Instance UID → spool file
    study_c: str


def _instance(study: str, series: str, sop: str, **attrs: Any) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(32))
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _save(ds: Dataset, path: Path, syntax: str) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _index(state: Path, datasets: list[tuple[Dataset, str]]) -> dict[str, Path]:
    """Write the files into the spool and index them as the imaging domain would."""
    state.mkdir(parents=True, exist_ok=True)
    conn = open_database(state / "journal.db")
    now = datetime.now(UTC).isoformat()
    files = {}
    for number, (ds, syntax) in enumerate(datasets):
        relative = f"2024/01/15/{number}.dcm"
        _save(ds, state / "spool" / relative, syntax)
        files[str(ds.SOPInstanceUID)] = state / "spool" / relative
        conn.execute(
            "INSERT OR REPLACE INTO im_patients VALUES (?, ?, ?, ?)",
            (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex),
        )
        conn.execute(
            "INSERT OR IGNORE INTO im_studies (study_uid, patient_id, accession, study_date,"
            " study_time, modalities, first_received, last_received) VALUES (?,?,?,?,?,?,?,?)",
            (ds.StudyInstanceUID, ds.PatientID, ds.AccessionNumber, ds.StudyDate, ds.StudyTime,
             ds.Modality, now, now),
        )  # fmt: skip
        conn.execute(
            "INSERT OR IGNORE INTO im_series VALUES (?, ?, ?, ?, ?, ?)",
            (ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality, ds.SeriesNumber,
             ds.get("SeriesDescription", ""), ""),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO im_instances VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL)",
            (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPClassUID,
             syntax, ds.InstanceNumber, relative, files[ds.SOPInstanceUID].stat().st_size,
             now, "MODALITY", f"e{number}"),
        )  # fmt: skip
    conn.close()
    return files


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def move_port() -> int:
    return _free_port()


@pytest.fixture
def peer(tmp_path: Path, move_port: int) -> Iterator[Peer]:
    patient1: dict[str, Any] = {
        "PatientID": "P1",
        "PatientName": NAME_P1,
        "PatientBirthDate": "19700102",
    }
    patient1 |= {"PatientSex": "M"}
    study_a: dict[str, Any] = {
        "StudyDate": "20240115",
        "StudyTime": "093000",
        "AccessionNumber": "ACC-A",
    }
    study_a |= {"Modality": "CT", "SeriesNumber": 1}
    study_b: dict[str, Any] = {
        "PatientID": "P2",
        "PatientName": "Smith^John",
        "PatientBirthDate": "",
    }
    study_b |= {"PatientSex": "F", "StudyDate": "20240220", "StudyTime": "141500"}
    study_b |= {"AccessionNumber": "ACC-B", "Modality": "MR", "SeriesNumber": 2}
    jpeg = make_jpeg(tmp_path)
    capture = convert.build(
        jpeg, parse_sidecar(json.dumps(
            {**SIDECAR, "patient_id": "P1", "accession": "ACC-C", "study_date": "20240301"}
        ).encode()),
        image_sha256="ef" * 32, study=None, captured_at=datetime(2024, 3, 1, tzinfo=UTC), tz=TZ,
        settings=convert.Settings(),
    )  # fmt: skip
    capture.StudyTime = "080000"
    state = tmp_path / "state"
    files = _index(
        state,
        [
            (_instance(STUDY_A, SERIES_A, f"{SERIES_A}.1", InstanceNumber=1, **patient1, **study_a),
             ExplicitVRLittleEndian),
            (_instance(STUDY_A, SERIES_A, f"{SERIES_A}.2", InstanceNumber=2, **patient1, **study_a),
             ExplicitVRLittleEndian),
            (_instance(STUDY_B, SERIES_B, f"{SERIES_B}.1", InstanceNumber=1, **study_b),
             ImplicitVRLittleEndian),
            (capture, capture.file_meta.TransferSyntaxUID),
        ],
    )  # fmt: skip
    index = StudyIndexReader(state / "journal.db")
    ae = MovingAE("EDGE")
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
    try:
        yield Peer(server.server_address[1], state, files, str(capture.StudyInstanceUID))
    finally:
        server.shutdown()


async def _find(peer: Peer, out: Path, model: str, *keys: str) -> list[Dataset]:
    out.mkdir()
    argv = [dcmtk("findscu"), model, "-aec", "EDGE", "-X", "-od", str(out)]
    for key in keys:
        argv += ["-k", key]
    await run_tool(*argv, "127.0.0.1", str(peer.port))
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


async def test_find_at_every_level_with_dicom_matching(peer: Peer, tmp_path: Path) -> None:
    studies = await _find(
        peer, tmp_path / "f1", "-S", "QueryRetrieveLevel=STUDY", "StudyDate=20240101-20240131",
        "StudyInstanceUID", "PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
        "AccessionNumber", "StudyDescription",
    )  # fmt: skip
    assert [s.StudyInstanceUID for s in studies] == [STUDY_A]
    only = studies[0]
    assert str(only.PatientName) == NAME_P1 and only.SpecificCharacterSet == "ISO_IR 192"
    assert only.NumberOfStudyRelatedInstances == 2 and only.ModalitiesInStudy == "CT"
    assert only.RetrieveAETitle == "EDGE" and only.StudyDescription == ""
    assert {e.keyword for e in only} == {
        "SpecificCharacterSet", "StudyDate", "AccessionNumber", "QueryRetrieveLevel",
        "RetrieveAETitle", "ModalitiesInStudy", "StudyDescription", "PatientName",
        "StudyInstanceUID", "NumberOfStudyRelatedInstances",
    }  # fmt: skip
    patients = await _find(
        peer, tmp_path / "f2", "-P", "QueryRetrieveLevel=PATIENT", "PatientName=wang*",
        "PatientID", "NumberOfPatientRelatedStudies",
    )  # fmt: skip
    assert [(p.PatientID, p.NumberOfPatientRelatedStudies) for p in patients] == [("P1", 2)]
    chinese = await _find(
        peer, tmp_path / "f3", "-P", "QueryRetrieveLevel=PATIENT",
        "SpecificCharacterSet=ISO_IR 192", "PatientName=王*", "PatientID",
    )  # fmt: skip
    assert [p.PatientID for p in chinese] == ["P1"]
    of_p1 = await _find(peer, tmp_path / "f4", "-P", "QueryRetrieveLevel=STUDY", "PatientID=P1",
                        "StudyInstanceUID", "StudyTime=0700-0900")  # fmt: skip
    assert [s.StudyInstanceUID for s in of_p1] == [peer.study_c]
    series = await _find(
        peer, tmp_path / "f5", "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY_B}",
        "SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances",
    )  # fmt: skip
    assert [(s.SeriesInstanceUID, s.Modality, s.SeriesNumber) for s in series] == [
        (SERIES_B, "MR", 2)
    ]
    images = await _find(
        peer, tmp_path / "f6", "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY_A}",
        f"SeriesInstanceUID={SERIES_A}", "SOPInstanceUID", "InstanceNumber",
    )  # fmt: skip
    assert [(i.SOPInstanceUID, i.InstanceNumber) for i in images] == [
        (f"{SERIES_A}.1", 1), (f"{SERIES_A}.2", 2)
    ]  # fmt: skip
    wild = await _find(peer, tmp_path / "f7", "-S", "QueryRetrieveLevel=STUDY",
                       "AccessionNumber=ACC-?", "StudyInstanceUID")  # fmt: skip
    assert len(wild) == 3
    listed = await _find(
        peer, tmp_path / "f8", "-S", "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={STUDY_A}\\{STUDY_B}", "ModalitiesInStudy=MR",
    )  # fmt: skip
    assert [s.StudyInstanceUID for s in listed] == [STUDY_B]


def _dataset_bytes(path: Path) -> bytes:
    """The bytes after the file meta group: the dataset as encoded (the meta is the sender's)."""
    with path.open("rb") as fp:
        read_preamble(fp, False)
        _read_file_meta_info(fp)
        return fp.read()


async def test_move_sends_the_spool_files_unchanged(
    peer: Peer, tmp_path: Path, move_port: int
) -> None:
    out = tmp_path / "moved"
    out.mkdir()
    await run_tool(
        dcmtk("movescu"), "-P", "-aet", "MOVESCU", "-aem", "MOVESCU", "-aec", "EDGE",
        "+P", str(move_port), "+xa", "+B", "-k", "QueryRetrieveLevel=PATIENT",
        "-k", "PatientID=P1", "127.0.0.1", str(peer.port), cwd=out,
    )  # fmt: skip
    await run_tool(
        dcmtk("movescu"), "-S", "-aet", "MOVESCU", "-aem", "MOVESCU", "-aec", "EDGE",
        "+P", str(move_port), "+xa", "+B", "-k", "QueryRetrieveLevel=SERIES",
        "-k", f"StudyInstanceUID={STUDY_B}", "-k", f"SeriesInstanceUID={SERIES_B}",
        "127.0.0.1", str(peer.port), cwd=out,
    )  # fmt: skip
    received = {str(dcmread(p).SOPInstanceUID): p for p in out.iterdir()}
    assert set(received) == set(peer.files)
    for sop, path in received.items():
        assert _dataset_bytes(path) == _dataset_bytes(peer.files[sop]), sop
        sent = dcmread(peer.files[sop]).file_meta.TransferSyntaxUID
        assert dcmread(path).file_meta.TransferSyntaxUID == sent


async def test_get_returns_the_series_on_the_same_association(peer: Peer, tmp_path: Path) -> None:
    out = tmp_path / "got"
    out.mkdir()
    await run_tool(
        dcmtk("getscu"), "-S", "-aec", "EDGE", "+B", "-od", str(out),
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={STUDY_A}",
        "-k", f"SeriesInstanceUID={SERIES_A}", "127.0.0.1", str(peer.port), cwd=out,
    )  # fmt: skip
    got = sorted(str(dcmread(p).SOPInstanceUID) for p in out.iterdir())
    assert got == [f"{SERIES_A}.1", f"{SERIES_A}.2"]


def _scu_statuses(peer: Peer, move_to: str | None, identifier: Dataset) -> list[int]:
    ae = AE("SCU")
    ae.add_requested_context(STUDY_ROOT_FIND)
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title="EDGE")
    assert assoc.is_established
    try:
        if move_to is None:
            responses = assoc.send_c_find(identifier, STUDY_ROOT_FIND)
        else:
            responses = assoc.send_c_move(identifier, move_to, STUDY_ROOT_MOVE)
        return [int(status.Status) for status, _ in responses if status]
    finally:
        assoc.release()


async def test_unknown_destination_and_bad_identifiers_fail(peer: Peer, move_port: int) -> None:
    move = Dataset()
    move.QueryRetrieveLevel = "STUDY"
    move.StudyInstanceUID = STUDY_A
    assert await asyncio.to_thread(_scu_statuses, peer, "NOBODY", move) == [0xA801]
    no_key = Dataset()
    no_key.QueryRetrieveLevel = "STUDY"
    destination = AE("MOVESCU")
    destination.add_supported_context("1.2.840.10008.1.1")
    server = destination.start_server(("127.0.0.1", move_port), block=False)
    assert server is not None
    try:
        statuses = await asyncio.to_thread(_scu_statuses, peer, "MOVESCU", no_key)
    finally:
        server.shutdown()
    assert statuses[-1] == 0xA900
    bad_level = Dataset()
    bad_level.QueryRetrieveLevel = "PATIENT"  # Study Root has no patient level
    bad_level.PatientID = ""
    assert await asyncio.to_thread(_scu_statuses, peer, None, bad_level) == [0xA900]
    bad_date = Dataset()
    bad_date.QueryRetrieveLevel = "STUDY"
    with pytest.warns(UserWarning, match="DA"):
        bad_date.StudyDate = "2024-01-01"
    assert await asyncio.to_thread(_scu_statuses, peer, None, bad_date) == [0xC000]


def test_the_index_is_opened_read_only(peer: Peer) -> None:
    before = (peer.state / "journal.db").stat().st_mtime_ns
    uid = generate_uid()
    index = StudyIndexReader(peer.state / "journal.db")
    with index._connect() as conn, pytest.raises(Exception, match="readonly"):
        conn.execute("INSERT INTO im_patients (patient_id) VALUES (?)", (uid,))
    assert (peer.state / "journal.db").stat().st_mtime_ns == before


async def test_a_purged_image_is_unavailable_in_c_find_and_a_failed_sub_operation_in_c_move(
    peer: Peer, tmp_path: Path, move_port: int
) -> None:
    purged = f"{SERIES_A}.2"
    conn = open_database(peer.state / "journal.db")  # what the spool's keeper leaves behind
    conn.execute("UPDATE im_instances SET purged_at = '2026-12-01' WHERE sop_uid = ?", (purged,))
    conn.close()
    peer.files[purged].unlink()
    images = await _find(
        peer, tmp_path / "f", "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY_A}",
        "SOPInstanceUID", "InstanceAvailability",
    )  # fmt: skip
    assert [(i.SOPInstanceUID, i.InstanceAvailability) for i in images] == [
        (f"{SERIES_A}.1", "ONLINE"), (purged, "UNAVAILABLE")
    ]  # fmt: skip
    out = tmp_path / "moved"
    out.mkdir()
    mover = await asyncio.create_subprocess_exec(
        dcmtk("movescu"), "-v", "-S", "-aet", "MOVESCU", "-aem", "MOVESCU", "-aec", "EDGE",
        "+P", str(move_port), "+xa", "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={STUDY_A}", "127.0.0.1", str(peer.port),
        cwd=out, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    said = (await asyncio.wait_for(mover.communicate(), 60))[0].decode()
    assert [str(dcmread(p).SOPInstanceUID) for p in out.iterdir()] == [f"{SERIES_A}.1"]
    # The final response: warning B000, the purged instance listed as a failed sub-operation.
    assert "Final Move Response (Warning: SubOperationsCompleteOneOrMoreFailures)" in said, said
