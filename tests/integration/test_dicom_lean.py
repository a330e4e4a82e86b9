"""The lean C-STORE acceptor against peers that misbehave at the byte level, and its hand-offs."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu_primitives import (
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from drivers.dicom import wire
from tests.dicom_files import make_ct_slices
from tests.helpers import eventually
from tests.integration.test_dicom_scp import (
    RecordingContext,
    dataset_bytes,
    make_scp,
    rejection,
    request,
    send_files,
    serving,
)

CT = str(CTImageStorage)


def command(field: int, message_id: int, with_data: bool, **uids: str) -> bytes:
    ds = Dataset()
    ds.CommandGroupLength = 0
    ds.CommandField = field
    ds.MessageID = message_id
    ds.CommandDataSetType = 0x0001 if with_data else 0x0101
    for keyword, value in uids.items():
        setattr(ds, keyword, value)
    raw = encode(ds, True, True)
    assert raw is not None
    ds.CommandGroupLength = len(raw) - 12
    final = encode(ds, True, True)
    assert final is not None
    return final


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    pdv = (len(data) + 2).to_bytes(4, "big") + bytes([context_id, control]) + data
    return bytes([wire.P_DATA_TF, 0]) + len(pdv).to_bytes(4, "big") + pdv


class RawPeer:
    """A blocking socket speaking the upper layer by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)

    def pdu(self) -> tuple[int, bytes]:
        header = self._exact(6)
        kind, length = wire.pdu_header(header)
        return kind, self._exact(length)

    def associate(self, max_pdu: int = 16_384) -> None:
        self.sock.sendall(request(max_pdu))
        kind, _ = self.pdu()
        assert kind == wire.A_ASSOCIATE_AC

    def response(self) -> Dataset:
        """Reassemble one command (maybe fragmented) from P-DATA-TF PDUs."""
        parts = []
        while True:
            kind, body = self.pdu()
            assert kind == wire.P_DATA_TF
            size, _, control = wire.pdv_header(body[:6])
            parts.append(body[6 : 6 + size])
            if control & 0x02:
                return decode(io.BytesIO(b"".join(parts)), True, True)

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the agent closed the connection"
            data += chunk
        return data


async def test_plain_storage_is_served_by_the_lean_path_and_role_selection_by_pynetdicom(
    tmp_path: Path,
):
    files = make_ct_slices(tmp_path / "in", 2, rows=32, columns=32)
    ctx = RecordingContext(tmp_path / "state")
    scp = make_scp(fast_store=True)
    async with serving(scp, ctx) as port:
        assert await asyncio.to_thread(send_files, port, files[:1]) == [0x0000]
        assert scp.fast_store is not None and scp.fast_store.served == 1

        def with_role_selection() -> int:  # what a C-GET requestor proposes: not plain
            ae = AE(ae_title="GETSCU")
            ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
            role = SCP_SCU_RoleSelectionNegotiation()
            role.sop_class_uid = CT
            role.scu_role, role.scp_role = True, True
            assoc = ae.associate("127.0.0.1", port, ae_title="EDGE", ext_neg=[role])
            try:
                return int(assoc.send_c_store(files[1]).Status)
            finally:
                assoc.release()

        assert await asyncio.to_thread(with_role_selection) == 0x0000
        assert scp.fast_store.served == 1
    stored = ctx.kinds("dicom.stored")
    assert len(stored) == 2
    for payload, source in zip(stored, files, strict=True):
        assert dataset_bytes(Path(payload["path"])) == dataset_bytes(source)


async def test_a_data_set_without_its_command_is_aborted_and_nothing_is_kept(tmp_path: Path):
    ctx = RecordingContext(tmp_path / "state")
    async with serving(make_scp(fast_store=True), ctx) as port:

        def misbehave() -> tuple[int, bytes]:
            peer = RawPeer(port)
            peer.associate()
            peer.sock.sendall(p_data(1, 0x02, b"\x08\x00\x18\x00" + b"\0" * 60))
            kind, body = peer.pdu()
            peer.sock.close()  # the requestor closes after an abort (PS3.8 Sta13)
            return kind, body

        kind, body = await asyncio.to_thread(misbehave)
        assert kind == wire.A_ABORT and body[2] == 2  # source: the service provider
        files = make_ct_slices(tmp_path / "in", 1, rows=32, columns=32)
        assert await asyncio.to_thread(send_files, port, files) == [0x0000]  # still serving
    assert len(ctx.kinds("dicom.stored")) == 1


async def test_a_peer_gone_mid_data_set_leaves_nothing_behind(tmp_path: Path):
    source = make_ct_slices(tmp_path / "in", 1, rows=64, columns=64)[0]
    data = dataset_bytes(source)
    ctx = RecordingContext(tmp_path / "state")
    scp = make_scp(fast_store=True)
    async with serving(scp, ctx) as port:

        def vanish() -> None:
            peer = RawPeer(port)
            peer.associate()
            uids = {"AffectedSOPClassUID": CT, "AffectedSOPInstanceUID": "1.2.3.4"}
            peer.sock.sendall(p_data(1, 0x03, command(wire.C_STORE_RQ, 1, True, **uids)))
            peer.sock.sendall(p_data(1, 0x00, data[: len(data) // 2]))
            peer.sock.close()

        await asyncio.to_thread(vanish)
        tmp = ctx.state_dir / "spool" / "tmp"

        async def emptied() -> bool:  # the association's thread cleans up after the reset
            assert scp.fast_store is not None
            return scp.fast_store.active == 0 and not any(tmp.iterdir())

        await eventually(emptied)
    assert ctx.events == []


async def test_responses_fit_the_peers_maximum_pdu_and_echo_succeeds(tmp_path: Path):
    async with serving(make_scp(fast_store=True), RecordingContext(tmp_path)) as port:

        def echo() -> Dataset:
            peer = RawPeer(port)
            peer.associate(max_pdu=40)
            rq = command(wire.C_ECHO_RQ, 5, False, AffectedSOPClassUID=str(Verification))
            peer.sock.sendall(p_data(3, 0x03, rq))
            response = peer.response()
            peer.sock.sendall(bytes([wire.A_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
            assert peer.pdu()[0] == wire.A_RELEASE_RP
            peer.sock.close()
            return response

        response = await asyncio.to_thread(echo)
    assert (response.CommandField, response.Status) == (0x8030, 0x0000)
    assert response.MessageIDBeingRespondedTo == 5


async def test_beyond_max_associations_a_request_is_rejected_transiently(tmp_path: Path):
    files = make_ct_slices(tmp_path / "in", 1, rows=32, columns=32)
    scp = make_scp(fast_store=True, max_associations=1)
    async with serving(scp, RecordingContext(tmp_path / "s")) as port:
        holder = await asyncio.to_thread(RawPeer, port)
        await asyncio.to_thread(holder.associate)

        assert await asyncio.to_thread(rejection, port, "SECOND") == (0x02, 0x03, 0x02)
        holder.sock.close()

        async def freed() -> bool:
            assert scp.fast_store is not None
            return scp.fast_store.active == 0

        await eventually(freed)

        def store() -> list[int] | None:
            ae = AE(ae_title="PYSCU")
            ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
            if not assoc.is_established:  # the rejected one's thread may outlive its connection
                return None
            try:
                return [int(assoc.send_c_store(files[0]).Status)]
            finally:
                assoc.release()

        assert await eventually(lambda: asyncio.to_thread(store)) == [0x0000]
