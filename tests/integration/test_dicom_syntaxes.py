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
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt

from agent import toml_out
from tests.mosquitto import free_port
from tests.peers import dcmtk

AGENT_AE = "EDGE_AGENT"
CT, SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PREFERS_LE = "WANTS_LE"  # configured to prefer Explicit VR Little Endian whatever it proposes
# getscu proposes Explicit VR LE first whatever its options: this AE is configured to prefer
# Implicit VR LE, which getscu proposes too.
PREFERS_ILE = "WANTS_ILE"

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

NAMES = [*CASES, "MR_small_bigendian.dcm"]  # each copy's SOP Instance UID differs by its index


@dataclass
class Agent:
    """The running agent and its state folder."""

    port: int
    state: Path
    storescp_port: int
    sources: Path  # the test files as sent

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
                "allowed_calling_aes": ["STORESCU", "GETSCU", "MOVESCU", PREFERS_LE, PREFERS_ILE],
                "min_free_mb": 1,
                "move_destinations": {"MOVESCU": {"host": "127.0.0.1", "port": storescp_port}},
                "transfer_syntax_preference": {
                    PREFERS_LE: ["ExplicitVRLittleEndian"],
                    PREFERS_ILE: ["1.2.840.10008.1.2"],
                },
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
    if sys.platform == "win32":
        raise NotImplementedError("READY=1 comes over systemd's AF_UNIX notify socket")
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
    # After READY the rest goes to the file, or a full pipe would stall the agent.
    pump = threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, log), daemon=True)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        for line in proc.stdout:  # READY comes before the sources listen
            log.write(line)
            if b'"dicom.scp_listening"' in line:
                break
        pump.start()
        yield Agent(port, tmp / "state", storescp_port, tmp_path_factory.mktemp("sources"))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if pump.ident is not None:
            pump.join(10)
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
        if p.stat().st_size  # not one of the empty files created ahead for the next images
        and str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) == sop_uid
    ]
    assert found, f"{sop_uid} is not in the spool"
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def pydicom_file(name: str) -> Path:
    """A file of pydicom's test corpus."""
    return Path(str(get_testdata_file(name)))


def source_file(agent: Agent, name: str) -> Path:
    """A copy of the pydicom test file with a SOP Instance UID of its own (some share theirs).

    The UID is changed in the bytes (its last digit), so the copy keeps everything else as it
    was, group lengths included. A file without study and series UIDs is given them by pydicom.
    """
    copy = agent.sources / name
    if copy.exists():
        return copy
    original = pydicom_file(name)
    ds = dcmread(original)
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[name, "study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[name, "series"])
        ds.save_as(copy, enforce_file_format=True)
        return copy
    raw = original.read_bytes()
    if not ds.file_meta.TransferSyntaxUID.is_deflated:  # the data set's bytes are compressed
        sop = str(ds.SOPInstanceUID).encode()
        digit = str((int(sop[-1:]) + 1 + NAMES.index(name)) % 10).encode()
        raw = raw.replace(sop, sop[:-1] + digit)
    copy.write_bytes(raw)
    return copy


def store(agent: Agent, name: str, option: str, calling: str = "STORESCU") -> Path:
    """`storescu -R +C <option>` one pydicom test file; the spool file it became."""
    source = source_file(agent, name)
    run(dcmtk("storescu"), "-v", "-R", "+C", option, "-aet", calling, "-aec", AGENT_AE,
        *agent.peer(), str(source))  # fmt: skip
    return stored_file(agent, str(dcmread(source, stop_before_pixels=True).SOPInstanceUID))


@pytest.mark.parametrize(("name", "option"), CASES.items(), ids=list(CASES))
def test_storescu_combined_proposal_is_stored_in_the_senders_syntax(
    agent: Agent, name: str, option: str
) -> None:
    stored = store(agent, name, option)
    source = dcmread(source_file(agent, name))
    assert syntax_of(stored) == source.file_meta.TransferSyntaxUID
    if "PixelData" in source:  # storescu may re-encode group lengths, never the pixels
        assert dcmread(stored).PixelData == source.PixelData


def test_a_configured_preference_overrides_the_senders_order(agent: Agent) -> None:
    stored = store(agent, "image_dfl.dcm", "-xd", calling=PREFERS_LE)
    assert syntax_of(stored) == "1.2.840.10008.1.2.1"  # the deflated proposal came first
    assert dcmread(stored).PixelData == dcmread(source_file(agent, "image_dfl.dcm")).PixelData


def image_keys(sop_uid: str) -> list[str]:
    return ["-k", "QueryRetrieveLevel=IMAGE", "-k", f"SOPInstanceUID={sop_uid}"]


def get(agent: Agent, sop_uid: str, out: Path, option: str) -> tuple[Path | None, str]:
    """`getscu` one instance at IMAGE level (Patient Root); the file it wrote and its output."""
    out.mkdir()
    calling, options = (PREFERS_ILE, []) if option == "+xi" else ("GETSCU", [option])
    done = subprocess.run(
        [dcmtk("getscu"), "-v", "-P", "-aet", calling, "-aec", AGENT_AE, "+B", *options, "-od",
         str(out), *image_keys(sop_uid), *agent.peer()],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    files = list(out.iterdir())
    return (files[0] if files else None), done.stdout + done.stderr


def move(agent: Agent, sop_uid: str, out: Path, option: str) -> tuple[Path | None, str]:
    """`movescu` one instance to itself (its own storage SCP); the file it received."""
    out.mkdir()
    done = subprocess.run(
        [dcmtk("movescu"), "-v", "-P", "-aet", "MOVESCU", "-aem", "MOVESCU", "-aec", AGENT_AE,
         "+P", str(agent.storescp_port), "+B", option, *image_keys(sop_uid), *agent.peer()],
        cwd=out, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    files = list(out.iterdir())
    return (files[0] if files else None), done.stdout + done.stderr


@pytest.mark.parametrize(("name", "option"), CASES.items(), ids=list(CASES))
def test_getscu_and_movescu_get_the_stored_bytes_back(
    agent: Agent, tmp_path: Path, name: str, option: str
) -> None:
    stored = store(agent, name, option)
    sop_uid = str(dcmread(stored, stop_before_pixels=True).SOPInstanceUID)
    accept = "+" + option[1:]  # the same syntax preferred by the retrieving side
    for how, retrieve in (("get", get), ("move", move)):
        got, out = retrieve(agent, sop_uid, tmp_path / how, accept)
        assert got is not None, out
        assert syntax_of(got) == syntax_of(stored), out
        assert dataset_bytes(got) == dataset_bytes(stored), how


def test_big_endian_is_converted_for_a_peer_that_does_not_take_it(
    agent: Agent, tmp_path: Path
) -> None:
    stored = store(agent, "MR_small_bigendian.dcm", "-xb")
    assert syntax_of(stored) == "1.2.840.10008.1.2.2"
    sop_uid = str(dcmread(stored).SOPInstanceUID)
    got, out = get(agent, sop_uid, tmp_path / "get", "+xe")  # proposes Explicit VR LE first
    assert got is not None, out
    converted = dcmread(got)
    assert converted.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    # The 16-bit pixels are byte-swapped, not copied: the same image as pydicom's LE file.
    assert converted.PixelData == dcmread(pydicom_file("MR_small.dcm")).PixelData
    assert converted.Rows == 64 and converted.SOPInstanceUID == sop_uid


MPEG2 = UID("1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile @ Main Level: no decoder here


def test_a_compressed_image_is_decoded_for_a_peer_that_takes_only_uncompressed(
    agent: Agent, tmp_path: Path
) -> None:
    for name, option in (("SC_rgb_jpeg_dcmtk.dcm", "-xy"), ("693_J2KI.dcm", "-xw")):
        stored = store(agent, name, option)
        sop_uid = str(dcmread(stored).SOPInstanceUID)
        got, out = get(agent, sop_uid, tmp_path / name, "+xe")  # uncompressed syntaxes only
        assert got is not None, out
        converted = dcmread(got)
        assert converted.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        original = dcmread(pydicom_file(name))
        original.decompress()  # pydicom with the same codecs: the same pixels
        assert converted.PixelData == original.PixelData
        assert converted.SOPInstanceUID == sop_uid


def store_mixed_study(agent: Agent, folder: Path, tag: str) -> tuple[str, dict[str, str]]:
    """A study of an SC image in MPEG2 (no codec decodes it here) and an Explicit VR LE CT image
    stored in the agent: its UID and {SOP Class UID: SOP Instance UID}."""
    study = str(generate_uid(entropy_srcs=["issue 15", "mixed study", tag]))
    sops = {}
    for name, syntax in (("SC_rgb_jpeg_dcmtk.dcm", "-xm"), ("CT_small.dcm", "-xe")):
        ds = dcmread(pydicom_file(name))
        if syntax == "-xm":  # the encapsulated frame relabelled: the agent keeps it as sent
            ds.file_meta.TransferSyntaxUID = MPEG2
        ds.StudyInstanceUID = study
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        sops[str(ds.SOPClassUID)] = str(ds.SOPInstanceUID)
        path = folder / f"{tag}-{name}"
        ds.save_as(path, enforce_file_format=True)
        run(dcmtk("storescu"), "-R", "+C", syntax, "-aet", "STORESCU", "-aec", AGENT_AE,
            *agent.peer(), str(path))  # fmt: skip
    return study, sops


def test_an_instance_the_peer_cannot_take_fails_alone(agent: Agent, tmp_path: Path) -> None:
    study, _ = store_mixed_study(agent, tmp_path, "getscu")
    out = tmp_path / "got"
    out.mkdir()
    # getscu proposes the uncompressed syntaxes only: no codec here turns MPEG2 into them.
    output = run(dcmtk("getscu"), "-d", "-S", "-aet", "GETSCU", "-aec", AGENT_AE, "+B", "-od",
                 str(out), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                 *agent.peer())  # fmt: skip
    (got,) = out.iterdir()
    assert dcmread(got).SOPClassUID == CT
    assert "Number of Completed Suboperations : 1" in output
    assert "Number of Failed Suboperations    : 1" in output
    final = output.split("Final status report")[0].rsplit("Received C-GET Response", 1)[1]
    assert "DIMSE Status                  : 0xb000" in final  # a warning, not a failure


def test_the_failed_instance_is_named_in_the_final_response(agent: Agent, tmp_path: Path) -> None:
    study, sops = store_mixed_study(agent, tmp_path, "pynetdicom")
    ae = AE("GETSCU")
    ae.add_requested_context(STUDY_ROOT_GET)
    roles: list[Any] = []
    for sop_class in sops:  # the SCP role, uncompressed syntaxes only
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        roles.append(build_role(sop_class, scp_role=True))
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    handlers: list[Any] = [(evt.EVT_C_STORE, on_store)]
    assoc = ae.associate("127.0.0.1", agent.port, ae_title=AGENT_AE, ext_neg=roles,
                         evt_handlers=handlers)  # fmt: skip
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    try:
        *_, (final, identifier) = list(assoc.send_c_get(query, STUDY_ROOT_GET))
    finally:
        assoc.release()
    assert received == [sops[CT]]
    assert final.Status == 0xB000
    assert final.NumberOfFailedSuboperations == 1 and final.NumberOfCompletedSuboperations == 1
    assert identifier is not None and identifier["FailedSOPInstanceUIDList"].VM == 1
    assert identifier.FailedSOPInstanceUIDList == sops[SECONDARY_CAPTURE]
