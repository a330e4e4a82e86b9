"""C-STORE forwarding on the lean storage link: refusals, aborts, unreachable peers, statuses."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.association import Association

from agent.dispatch.outcomes import Delivered, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.simulators.remote_imaging import RemoteImagingSimulator
from tests.helpers import eventually
from tests.integration.test_remote_imaging import (
    UPLINK,
    Observed,
    city_platform,
    dataset_bytes,
    dispatching,
    instance,
    journal_with,
    new_study,
    push,
    settled,
    uplink_config,
    write_instance,
)
from tests.integration.test_remote_imaging_decompress import jpeg2000
from tests.mosquitto import free_port
from tests.peers import dcmtk


@pytest.fixture(params=[False, True], ids=["pynetdicom_scp", "lean_scp"])
async def platform(request: pytest.FixtureRequest) -> AsyncIterator[RemoteImagingSimulator]:
    """The simulator with each of its storage SCPs: both enforce the same seed rules."""
    async with city_platform(dicom_lean=request.param) as simulator:
        yield simulator


def message(event_payload: dict[str, object], kind: str = "dicom.instance") -> OutboxMessage:
    return OutboxMessage(1, UPLINK, kind, "study:k", "d", event_payload, 1, 0, None)


async def test_a_rejected_association_is_retried_with_the_reason(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform, called_ae_title="NOT_CITY"))  # the SCP checks it
    payload = new_study()
    image = instance(write_instance(tmp_path, payload["study"]), payload["study"])

    async def refused() -> bool | None:
        reasons = [o.reason for _, o in uplink.outcomes if isinstance(o, Retry)]
        return True if any("rejected" in r for r in reasons) else None

    async with dispatching(journal, uplink):
        await journal.ingest([push(payload), image])
        await eventually(refused)
    assert all(isinstance(o, Retry) for k, o in uplink.outcomes if k == "dicom.instance")
    assert platform.received.instances == {}


async def test_an_abort_mid_study_is_retried_on_a_new_association(open_journal, platform, tmp_path):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform))
    payload = new_study()
    study = payload["study"]
    first, *rest = [instance(write_instance(tmp_path, study), study) for _ in range(3)]
    async with dispatching(journal, uplink):
        await journal.ingest([push(payload), first])
        await eventually(lambda: settled(journal, first))  # its association is kept open
        platform.faults.hold = True
        await journal.ingest(rest)
        await platform.wait_held(1)  # the second image is on the wire, unanswered
        await platform.go_down()  # the platform aborts its associations and refuses new ones

        async def retried() -> bool | None:
            # The kept association broke: one fresh one is tried at once, refused while down.
            return True if any(isinstance(o, Retry) for _, o in uplink.outcomes) else None

        await eventually(retried)
        platform.release_held()
        await platform.come_up()
        found = await eventually(lambda: settled(journal, *rest))
    assert {r["state"] for r in found.values()} == {"delivered"}
    sent = {Path(str(e.payload["path"])).stem for e in (first, *rest)}
    assert sent <= set(platform.received.instances)
    assert uplink.scu.associations >= 2


async def test_an_unreachable_peer_is_a_retry_naming_it(platform, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uplink = Observed(uplink_config(platform, dicom_port=port))
    payload = new_study()
    path = write_instance(tmp_path, payload["study"])
    try:
        outcome = await uplink.send(message({"path": str(path), "sop_uid": path.stem}))
    finally:
        await uplink.close()
    assert isinstance(outcome, Retry)
    assert f"127.0.0.1:{port}" in outcome.reason and "no association" in outcome.reason


def _silent_scp(listener: socket.socket, accepted: threading.Event) -> None:
    """Accept one connection and answer nothing (a peer that hangs after TCP)."""
    conn, _ = listener.accept()
    accepted.set()
    with conn:
        while conn.recv(4096):
            pass


async def test_a_peer_that_never_answers_the_association_is_a_retry(platform, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    thread = threading.Thread(target=_silent_scp, args=(listener, accepted), daemon=True)
    thread.start()
    uplink = Observed(
        uplink_config(platform, dicom_port=listener.getsockname()[1], acse_timeout=0.2)
    )
    payload = new_study()
    path = write_instance(tmp_path, payload["study"])
    try:
        outcome = await uplink.send(message({"path": str(path), "sop_uid": path.stem}))
    finally:
        await uplink.close()
        listener.close()
    assert accepted.is_set()
    assert isinstance(outcome, Retry) and "timed out" in outcome.reason


async def test_each_image_s_status_becomes_its_outcome(platform, tmp_path):
    uplink = Observed(uplink_config(platform))
    payload = new_study()
    study = payload["study"]
    files = [write_instance(tmp_path, study) for _ in range(4)]
    outcomes = []
    await uplink.open()
    try:
        assert isinstance(await uplink.send(message(payload, "exam.push")), Delivered)
        for status in (0xA700, 0xB007, 0xC000, None):
            if status is not None:
                platform.faults.dicom_status_next, platform.faults.dicom_status = 1, status
            path = files.pop()
            outcomes.append(await uplink.send(message({"path": str(path), "sop_uid": path.stem})))
    finally:
        await uplink.close()
    retry, warning, refused, stored = outcomes
    assert isinstance(retry, Retry) and "0xA700" in retry.reason
    assert isinstance(warning, Delivered) and "0xB007" in str(warning.response)
    assert (
        isinstance(refused, Reject) and "0xC000 (fault switch dicom_status_next)" in refused.reason
    )
    assert isinstance(stored, Delivered) and "0x0000" in str(stored.response)
    assert uplink.scu.associations == 1  # statuses, even refusals, keep the association


async def test_forwarding_runs_no_pynetdicom_association_of_its_own(platform, tmp_path):
    uplink = Observed(uplink_config(platform))
    payload = new_study()
    path = write_instance(tmp_path, payload["study"])
    await uplink.open()
    try:
        assert isinstance(await uplink.send(message(payload, "exam.push")), Delivered)
        outcome = await uplink.send(message({"path": str(path), "sop_uid": path.stem}))
        assert isinstance(outcome, Delivered) and uplink.scu.kept  # its association is open
        # Only the platform's side (the simulator, in this process) has pynetdicom threads: the
        # sender has no reactor that could take its responses (reactor_pause is not needed).
        requestors = [
            t for t in threading.enumerate() if isinstance(t, Association) and t.is_requestor
        ]
    finally:
        await uplink.close()
    assert requestors == []
    assert platform.received.associations == 1


async def test_a_study_s_later_images_go_from_the_event_loop_without_a_thread(platform, tmp_path):
    uplink = Observed(uplink_config(platform))
    handed: list[str] = []  # what the uplink hands to its threads
    submit = uplink._threads.submit

    def counted(call: Any, *args: Any) -> Any:
        handed.append(call.__name__)
        return submit(call, *args)

    uplink._threads.submit = counted  # type: ignore[method-assign,assignment]
    payload = new_study()
    paths = [write_instance(tmp_path, payload["study"]) for _ in range(5)]
    await uplink.open()
    try:
        assert isinstance(await uplink.send(message(payload, "exam.push")), Delivered)
        outcomes = [await uplink.send(message({"path": str(p), "sop_uid": p.stem})) for p in paths]
    finally:
        await uplink.close()
    assert all(isinstance(o, Delivered) for o in outcomes)
    assert set(platform.received.instances) == {p.stem for p in paths}
    assert platform.received.associations == 1
    assert handed.count("_store_blocking") == 1  # the association; four images from the loop
    assert "_send_blocking" not in handed


async def test_an_unanswered_c_store_on_the_loop_is_a_retry_on_a_fresh_association(
    platform, tmp_path
):
    uplink = Observed(uplink_config(platform, dimse_timeout=0.3))
    payload = new_study()
    first, second = (write_instance(tmp_path, payload["study"]) for _ in range(2))
    await uplink.open()
    try:
        assert isinstance(await uplink.send(message(payload, "exam.push")), Delivered)
        assert isinstance(
            await uplink.send(message({"path": str(first), "sop_uid": first.stem})), Delivered
        )
        platform.faults.hold = True  # the platform takes the next C-STOREs and never answers
        outcome = await uplink.send(message({"path": str(second), "sop_uid": second.stem}))
        platform.release_held()
        platform.faults.hold = False
    finally:
        await uplink.close()
    # The kept association timed out (closed); one fresh one was tried and timed out too.
    assert isinstance(outcome, Retry)
    assert platform.received.associations == 2


@pytest.fixture
async def storescp(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """dcmtk `storescp` (uncompressed transfer syntaxes only, its default) writing into a
    folder; (port, folder)."""
    folder = tmp_path / "storescp"
    folder.mkdir()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        dcmtk("storescp"), "-aet", "CITYPACS", "-od", str(folder), str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await eventually(lambda: _listening(port))
        yield port, folder
    finally:
        proc.terminate()
        await proc.wait()


async def _listening(port: int) -> bool | None:
    """True once storescp answers a C-ECHO (a bare connection would hold its only thread)."""
    echo = await asyncio.create_subprocess_exec(
        dcmtk("echoscu"), "-aec", "CITYPACS", "127.0.0.1", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return True if await echo.wait() == 0 else None


async def test_storescp_gets_the_stored_bytes_and_a_refused_compressed_syntax_is_a_dead_letter(
    platform, storescp, tmp_path
):
    port, folder = storescp
    payload = new_study()
    plain = write_instance(tmp_path, payload["study"])
    compressed = jpeg2000(tmp_path, payload["study"])
    # storescp serves one association at a time: each uplink releases its own before the next.
    uplink = Observed(uplink_config(platform, dicom_port=port))
    try:
        sent = await uplink.send(message({"path": str(plain), "sop_uid": plain.stem}))
        refused = await uplink.send(message({"path": str(compressed), "sop_uid": "j2k"}))
    finally:
        await uplink.close()
    decoding = Observed(uplink_config(platform, dicom_port=port, decompress=True))
    try:
        decoded = await decoding.send(message({"path": str(compressed), "sop_uid": "j2k"}))
    finally:
        await decoding.close()
    assert isinstance(sent, Delivered)
    (received,) = [f for f in folder.iterdir() if plain.stem in f.name]
    assert dataset_bytes(received) == dataset_bytes(plain)  # as stored, not re-encoded
    assert isinstance(refused, Reject) and "accepted no context" in refused.reason
    assert isinstance(decoded, Delivered)
    assert len(list(folder.iterdir())) == 2
