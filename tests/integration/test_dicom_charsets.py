"""Issue 15: Chinese patient names in GB18030 and in ISO_IR 192, through the running agent.

Chinese hospitals send both. Each study goes in with dcmtk `storescu`, is indexed, is found by
C-FIND with a wildcard on the Chinese name (dcmtk `findscu` and a pynetdicom SCU, the query
itself in either character set), and comes back by C-MOVE (`movescu`) and C-GET (pynetdicom)
with its data set unchanged, byte for byte: names are never re-encoded. One GB18030 name holds
characters whose second byte is 0x5C, a backslash in ASCII (淺, 禱): not a value delimiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from tests.dicom_files import make_dataset, save
from tests.integration.test_dicom_interop import write_config
from tests.integration.test_dicom_qr import _dataset_bytes
from tests.mosquitto import free_port
from tests.peers import dcmtk, run_tool
from tests.watched_agent import WatchedAgent

# (character set, patient ID, name): the name as the modality typed it.
PATIENTS = [
    ("GB18030", "GB001", "Zhang^San=张^三"),
    ("GB18030", "GB002", "Wang^Qiandao=王^淺禱"),
    ("ISO_IR 192", "UTF001", "Zhang^Wei=张^伟"),
    ("ISO_IR 192", "UTF002", "Li^Na=李^娜"),
]


@dataclass
class Running:
    """The agent holding the four studies: its port, the move port, and the files sent."""

    port: int
    move_port: int
    files: dict[str, Path]  # SOP Instance UID → file sent
    studies: dict[str, str]  # patient ID → Study Instance UID


def chinese_study(directory: Path, charset: str, patient_id: str, name: str) -> list[Path]:
    """Two instances of one study whose names are encoded in `charset`."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in (1, 2):
        ds = make_dataset(
            modality="CT",
            patient_id=patient_id,
            study_uid=study,
            series_uid=series,
            series_number=1,
            instance_number=number,
            accession=f"A{patient_id}",
        )
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.StudyDescription = "胃镜检查"  # gastroscopy
        paths.append(save(ds, directory / patient_id / f"{number}.dcm"))
    return paths


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    files: list[Path] = []
    for charset, patient_id, name in PATIENTS:
        files += chinese_study(tmp_path / "sent", charset, patient_id, name)
    raw = files[2].read_bytes()
    assert "王^淺禱".encode("gb18030") in raw and b"\\" in "淺禱".encode("gb18030")
    port, move_port = free_port(), free_port()
    agent = WatchedAgent(write_config(tmp_path, port, move_port), tmp_path)
    await agent.start()
    try:
        await agent.wait_log(lambda line: line.get("event") == "dicom.scp_listening")
        await run_tool(
            dcmtk("storescu"), "-aet", "CT01", "-aec", "EDGE_AGENT", "127.0.0.1", str(port),
            *map(str, files),
        )  # fmt: skip
        sent = {str(dcmread(p).SOPInstanceUID): p for p in files}
        studies = {str(dcmread(p).PatientID): str(dcmread(p).StudyInstanceUID) for p in files}
        yield Running(port, move_port, sent, studies)
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()


def query(charset: str, name: str) -> Dataset:
    """A study-level C-FIND identifier for `name` (wildcards allowed), encoded in `charset`."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    ds.PatientID = ""
    ds.StudyInstanceUID = ""
    ds.StudyDescription = ""
    return ds


async def findscu(running: Running, identifier: Dataset, out: Path) -> list[Dataset]:
    """dcmtk findscu with `identifier` as its query file; the responses."""
    out.mkdir()
    identifier.save_as(out / "query.dcm", implicit_vr=False, little_endian=True)
    await run_tool(
        dcmtk("findscu"), "-S", "-aet", "GATEWAY", "-aec", "EDGE_AGENT", "-X", "-od", str(out),
        "127.0.0.1", str(running.port), str(out / "query.dcm"),
    )  # fmt: skip
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def pynetdicom_find(running: Running, identifier: Dataset) -> list[Dataset]:
    """The same query from a pynetdicom SCU."""
    ae = AE("GATEWAY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", running.port, ae_title="EDGE_AGENT")
    assert assoc.is_established
    try:
        found = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        return [ds for status, ds in found if ds is not None and status.Status == 0xFF00]
    finally:
        assoc.release()


def pynetdicom_get(running: Running, study_uid: str) -> dict[str, bytes]:
    """C-GET a study with pynetdicom; each instance's data set as received, encoded."""
    got: dict[str, bytes] = {}

    def on_store(event: Any) -> int:
        got[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        return 0x0000

    ae = AE("GATEWAY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)  # the stored syntax
    assoc = ae.associate(
        "127.0.0.1",
        running.port,
        ae_title="EDGE_AGENT",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    try:
        statuses = list(assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    assert statuses[-1][0].Status == 0x0000
    return got


def names(found: list[Dataset]) -> list[str]:
    return sorted(str(ds.PatientName) for ds in found)


async def test_chinese_names_are_indexed_found_and_retrieved_unchanged(
    running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process's C-GET SCU keeps what it receives in memory, whatever an in-process SCP
    # of an earlier test set (pynetdicom's setting is process-wide).
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)
    zhang = ["Zhang^San=张^三", "Zhang^Wei=张^伟"]
    for charset in ("GB18030", "ISO_IR 192"):
        found = await findscu(running, query(charset, "张*"), tmp_path / f"find-{charset}")
        assert names(found) == zhang, charset
        assert {ds.SpecificCharacterSet for ds in found} == {"ISO_IR 192"}
        found = await asyncio.to_thread(pynetdicom_find, running, query(charset, "*禱"))
        assert names(found) == ["Wang^Qiandao=王^淺禱"], charset
    found = await asyncio.to_thread(pynetdicom_find, running, query("GB18030", "李^娜"))
    assert [str(ds.PatientName) for ds in found] == ["Li^Na=李^娜"]
    assert found[0].StudyDescription == "胃镜检查"

    moved = tmp_path / "moved"
    moved.mkdir()
    for patient_id in ("GB001", "GB002", "UTF001"):
        await run_tool(
            dcmtk("movescu"), "-S", "-aet", "GATEWAY", "-aem", "GATEWAY", "-aec", "EDGE_AGENT",
            "+P", str(running.move_port), "+xa", "+B", "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={running.studies[patient_id]}",
            "127.0.0.1", str(running.port), cwd=moved,
        )  # fmt: skip
    retrieved = {str(dcmread(p).SOPInstanceUID): p for p in moved.iterdir()}
    assert len(retrieved) == 6
    for sop, path in retrieved.items():
        assert _dataset_bytes(path) == _dataset_bytes(running.files[sop]), sop

    got = await asyncio.to_thread(pynetdicom_get, running, running.studies["GB002"])
    assert len(got) == 2
    for sop, data in got.items():
        assert data == _dataset_bytes(running.files[sop]), sop
