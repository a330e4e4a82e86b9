"""Issue 15: transfer syntaxes with real dcmtk peers against one running agent.

`storescu +C` proposes a compressed syntax and the uncompressed ones in one context: the agent
keeps the sender's choice. `getscu` and `movescu` (to dcmtk `storescp`) get each instance back
with the data set bytes exactly as stored when they accept its syntax, converted when they don't
and a conversion exists. One agent serves the module; every case stores and retrieves its own
file (one SOP Instance UID at IMAGE level, so files that share a UID don't mix).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import generate_uid

from agent import toml_out
from tests.mosquitto import free_port
from tests.peers import dcmtk

AGENT_AE = "EDGE_AGENT"
PREFERS_LE = "WANTS_LE"  # configured to prefer Explicit VR Little Endian whatever it proposes

# pydicom test file → the storescu option proposing its syntax (with all uncompressed ones)
CASES = {
    "CT_small.dcm": "-xe",  # Explicit VR Little Endian
    "rtplan.dcm": "-xi",  # Implicit VR Little Endian
    "ExplVR_BigEnd.dcm": "-xb",  # Explicit VR Big Endian
    "image_dfl.dcm": "-xd",  # Deflated Explicit VR Little Endian
    "SC_rgb_jpeg_dcmtk.dcm": "-xy",  # JPEG Baseline
    "JPGExtended.dcm": "-xx",  # JPEG Extended
    "SC_rgb_jpeg_gdcm.dcm": "-xs",  # JPEG Lossless SV1
    "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS Lossless
    "JPEGLSNearLossless_08.dcm": "-xu",  # JPEG-LS Near-Lossless (given study and series UIDs)
    "GDCMJ2K_TextGBR.dcm": "-xv",  # JPEG 2000 Lossless
    "693_J2KI.dcm": "-xw",  # JPEG 2000
    "SC_rgb_rle.dcm": "-xr",  # RLE Lossless
}


@dataclass
class Agent:
    """The running agent and its state folder."""

    port: int
    state: Path
    storescp_port: int

    def peer(self) -> list[str]:
        return ["127.0.0.1", str(self.port)]


def _config(tmp: Path, port: int, storescp_port: int) -> Path:
    config = {
        "agent": {"state_dir": str(tmp / "state"), "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json"},
        "sources": {
            "pacs_in": {
                "type": "dicom_scp",
                "ae_title": AGENT_AE,
                "host": "127.0.0.1",
                "port": port,
                "allowed_calling_aes": ["STORESCU", "GETSCU", "MOVESCU", PREFERS_LE],
                "min_free_mb": 1,
                "move_destinations": {"STORESCP": {"host": "127.0.0.1", "port": storescp_port}},
                "transfer_syntax_preference": {PREFERS_LE: ["ExplicitVRLittleEndian"]},
            }
        },
        "domains": {"imaging": {"type": "imaging", "forward_to": []}},
    }
    path = tmp / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent process for the module (started and awaited without an event loop)."""
    tmp = tmp_path_factory.mktemp("agent")
    port, storescp_port = free_port(), free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp / "notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    argv = [
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "--config",
        str(_config(tmp, port, storescp_port)),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    log = (tmp / "agent.log").open("wb")
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        for line in proc.stdout:  # READY comes before the sources listen
            log.write(line)
            if b'"dicom.scp_listening"' in line:
                break
        # The rest goes to the file, or a full pipe would stall the agent.
        threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, log), daemon=True).start()
        yield Agent(port, tmp / "state", storescp_port)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        notify.close()
        log.close()


def run(*argv: str, cwd: Path | None = None) -> str:
    """Run a dcmtk tool to success; its output."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the file meta group: the data set as encoded."""
    with path.open("rb") as fp:
        read_preamble(fp, False)
        _read_file_meta_info(fp)
        return fp.read()


def syntax_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def stored_file(agent: Agent, sop_uid: str) -> Path:
    """The newest spool file holding `sop_uid`."""
    found = [
        p
        for p in (agent.state / "spool").rglob("*.dcm")
        if str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) == sop_uid
    ]
    assert found, f"{sop_uid} is not in the spool"
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def source_file(name: str) -> Path:
    """The pydicom test file, or a copy made storable (with study and series UIDs)."""
    path = Path(str(get_testdata_file(name)))
    ds = dcmread(path)
    if "StudyInstanceUID" in ds:
        return path
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[name, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[name, "series"])
    copy = Path(tempfile.mkdtemp()) / name
    ds.save_as(copy, enforce_file_format=True)
    return copy


def store(agent: Agent, name: str, option: str, calling: str = "STORESCU") -> Path:
    """`storescu -R +C <option>` one pydicom test file; the spool file it became."""
    source = source_file(name)
    run(dcmtk("storescu"), "-v", "-R", "+C", option, "-aet", calling, "-aec", AGENT_AE,
        *agent.peer(), str(source))  # fmt: skip
    return stored_file(agent, str(dcmread(source, stop_before_pixels=True).SOPInstanceUID))


@pytest.mark.parametrize(("name", "option"), CASES.items(), ids=list(CASES))
def test_storescu_combined_proposal_is_stored_in_the_senders_syntax(
    agent: Agent, name: str, option: str
) -> None:
    stored = store(agent, name, option)
    source = dcmread(source_file(name))
    assert syntax_of(stored) == source.file_meta.TransferSyntaxUID
    if "PixelData" in source:  # storescu may re-encode group lengths, never the pixels
        assert dcmread(stored).PixelData == source.PixelData


def test_a_configured_preference_overrides_the_senders_order(agent: Agent) -> None:
    stored = store(agent, "image_dfl.dcm", "-xd", calling=PREFERS_LE)
    assert syntax_of(stored) == "1.2.840.10008.1.2.1"  # the deflated proposal came first
    assert dcmread(stored).PixelData == dcmread(source_file("image_dfl.dcm")).PixelData
