"""Issue 15: Orthanc (the Debian package) as a sending PACS and as a Q/R client of the agent.

The test runs the Orthanc binary on free ports with a generated configuration (its own storage
folder, no plugins, no systemd service). A study uploaded to Orthanc is C-STOREd to the agent
(REST `/modalities/agent/store`), deleted from Orthanc, found in the agent by Orthanc's C-FIND
(`/modalities/agent/query`) and C-MOVEd back to Orthanc (`/queries/<id>/retrieve`): Orthanc
then holds every instance again, each data set byte for byte the one first uploaded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydicom import dcmread

from agent import toml_out
from tests.dicom_files import make_jpeg_baseline, make_study
from tests.helpers import eventually
from tests.integration.test_dicom_qr import _dataset_bytes
from tests.mosquitto import free_port
from tests.peers import required_tool
from tests.watched_agent import WatchedAgent

AGENT_AE, ORTHANC_AE = "EDGE_AGENT", "ORTHANC"


@dataclass
class Orthanc:
    """A running Orthanc: its REST base URL and DICOM port."""

    url: str
    dicom_port: int
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call; the decoded JSON answer (raises on an HTTP error)."""
        data = body if isinstance(body, bytes) else None
        payload = None if isinstance(body, bytes) or body is None else body
        async with self.http.request(
            method, self.url + path, data=data, json=payload, raise_for_status=True
        ) as response:
            if response.content_type == "application/json":
                return await response.json()
            return await response.read()


def orthanc_config(directory: Path, http_port: int, dicom_port: int, agent_port: int) -> Path:
    """A configuration of its own: storage in `directory`, the agent as modality "agent"."""
    config = {
        "Name": "edge-agent-test",
        "StorageDirectory": str(directory / "db"),
        "IndexDirectory": str(directory / "db"),
        "Plugins": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ORTHANC_AE,
        "DicomPort": dicom_port,
        "DicomModalities": {"agent": [AGENT_AE, "127.0.0.1", agent_port]},
        "DicomScuTimeout": 30,
        "StableAge": 1,
    }
    path = directory / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def agent_config(tmp_path: Path, port: int, orthanc_port: int) -> Path:
    """The agent: Orthanc may store and query, and is a move destination."""
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json"},
        "sources": {
            "pacs_in": {
                "type": "dicom_scp",
                "ae_title": AGENT_AE,
                "host": "127.0.0.1",
                "port": port,
                "allowed_calling_aes": [ORTHANC_AE],
                "min_free_mb": 1,
                "move_destinations": {ORTHANC_AE: {"host": "127.0.0.1", "port": orthanc_port}},
            }
        },
        "domains": {"imaging": {"type": "imaging", "forward_to": []}},
    }
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
async def orthanc(tmp_path: Path) -> AsyncIterator[tuple[Orthanc, int]]:
    """Orthanc on free ports, and the agent port it knows as modality "agent"."""
    binary = required_tool("Orthanc", "orthanc")
    directory = tmp_path / "orthanc"
    directory.mkdir()
    http_port, dicom_port, agent_port = free_port(), free_port(), free_port()
    config = orthanc_config(directory, http_port, dicom_port, agent_port)
    log = (directory / "orthanc.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary, str(config), stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with aiohttp.ClientSession() as http:
            server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, http)

            async def up() -> bool:
                if proc.returncode is not None:
                    pytest.fail((directory / "orthanc.log").read_text(errors="replace"))
                try:
                    await server.call("GET", "/system")
                except aiohttp.ClientError:
                    return False
                return True

            await eventually(up, timeout=30)
            yield server, agent_port
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        log.close()


async def test_orthanc_stores_to_the_agent_and_moves_the_study_back(
    orthanc: tuple[Orthanc, int], tmp_path: Path
) -> None:
    server, port = orthanc
    files = make_study(tmp_path / "sent", "ORTH01", series=(("CT", 3), ("MR", 2)))
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    files.append(make_jpeg_baseline(tmp_path / "sent" / "jpeg.dcm", "ORTH01", study_uid))
    originals = {str(dcmread(p).SOPInstanceUID): _dataset_bytes(p) for p in files}
    for path in files:
        await server.call("POST", "/instances", path.read_bytes())
    (study_id,) = await server.call("GET", "/studies")

    agent = WatchedAgent(agent_config(tmp_path, port, server.dicom_port), tmp_path)
    await agent.start()
    try:
        await agent.wait_log(lambda line: line.get("event") == "dicom.scp_listening")
        stored = await server.call("POST", "/modalities/agent/store", [study_id])
        assert stored["FailedInstancesCount"] == 0 and stored["InstancesCount"] == len(files)
        await server.call("DELETE", f"/studies/{study_id}")
        assert await server.call("GET", "/instances") == []

        found = await server.call(
            "POST",
            "/modalities/agent/query",
            {"Level": "Study", "Query": {"StudyInstanceUID": study_uid, "PatientID": ""}},
        )
        answers = await server.call("GET", f"/queries/{found['ID']}/answers?expand")
        assert [a["0010,0020"]["Value"] for a in answers] == ["ORTH01"]
        await server.call(
            "POST",
            f"/queries/{found['ID']}/retrieve",
            {"TargetAet": ORTHANC_AE, "Synchronous": True},
        )
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()

    back = await server.call("GET", "/instances")
    assert len(back) == len(files)
    for instance in back:
        raw = await server.call("GET", f"/instances/{instance}/file")
        (tmp_path / "back.dcm").write_bytes(raw)
        sop = str(dcmread(tmp_path / "back.dcm").SOPInstanceUID)
        assert _dataset_bytes(tmp_path / "back.dcm") == originals[sop], sop
