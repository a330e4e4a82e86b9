"""Issue 5 acceptance: dcmtk storescu → the running agent → findscu and movescu, files unchanged.

The real agent process (storage and Q/R on one AE, the study index in its journal) receives a
two-series study from `storescu`, answers `findscu` at study and image level, and sends the study
back with `movescu` (the SCU acting as its own move destination): every file retrieved carries
the data set that was sent, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from agent import toml_out
from tests.dicom_files import by_storescu_options, make_study
from tests.integration.test_dicom_qr import _dataset_bytes
from tests.mosquitto import free_port
from tests.peers import dcmtk, run_tool
from tests.watched_agent import WatchedAgent

PATIENT, ACCESSION = "P7001", "ACC7001"


def write_config(tmp_path: Path, port: int, move_port: int) -> Path:
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json"},
        "sources": {
            "pacs_in": {
                "type": "dicom_scp",
                "ae_title": "EDGE_AGENT",
                "host": "127.0.0.1",
                "port": port,
                "allowed_calling_aes": ["CT01", "GATEWAY"],
                "min_free_mb": 1,
                "move_destinations": {"GATEWAY": {"host": "127.0.0.1", "port": move_port}},
            }
        },
        "domains": {"imaging": {"type": "imaging", "forward_to": []}},
    }
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


async def test_storescu_in_findscu_and_movescu_out_with_identical_files(tmp_path):
    files = make_study(
        tmp_path / "sent", PATIENT, series=(("CT", 4), ("MR", 3)), accession=ACCESSION
    )
    port, move_port = free_port(), free_port()
    agent = WatchedAgent(write_config(tmp_path, port, move_port), tmp_path)
    await agent.start()
    try:
        await agent.wait_log(lambda line: line.get("event") == "dicom.scp_listening")
        peer = ["127.0.0.1", str(port)]
        for options, group in by_storescu_options(files):
            await run_tool(
                dcmtk("storescu"), *options, "-aet", "CT01", "-aec", "EDGE_AGENT", *peer,
                *map(str, group),
            )  # fmt: skip

        found = tmp_path / "found"
        found.mkdir()
        await run_tool(
            dcmtk("findscu"), "-S", "-aet", "GATEWAY", "-aec", "EDGE_AGENT", "-X", "-od",
            str(found), "-k", "QueryRetrieveLevel=STUDY", "-k", f"AccessionNumber={ACCESSION}",
            "-k", "StudyInstanceUID", "-k", "PatientID", "-k", "ModalitiesInStudy",
            "-k", "NumberOfStudyRelatedInstances", *peer,
        )  # fmt: skip
        (study,) = [dcmread(p) for p in found.glob("rsp*.dcm")]
        sent = dcmread(files[0], stop_before_pixels=True)
        assert study.StudyInstanceUID == sent.StudyInstanceUID and study.PatientID == PATIENT
        assert study.NumberOfStudyRelatedInstances == len(files)
        assert set(study.ModalitiesInStudy) == {"CT", "MR"}

        moved = tmp_path / "moved"
        moved.mkdir()
        await run_tool(
            dcmtk("movescu"), "-S", "-aet", "GATEWAY", "-aem", "GATEWAY", "-aec", "EDGE_AGENT",
            "+P", str(move_port), "+xa", "+B", "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={sent.StudyInstanceUID}", *peer, cwd=moved,
        )  # fmt: skip
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
    retrieved = {str(dcmread(p).SOPInstanceUID): p for p in moved.iterdir()}
    originals = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
    assert set(retrieved) == set(originals)
    for sop, path in retrieved.items():
        assert _dataset_bytes(path) == _dataset_bytes(originals[sop]), sop
