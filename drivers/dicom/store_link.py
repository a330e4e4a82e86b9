"""The storage association of a C-MOVE, requested and run by the moving thread alone.

pynetdicom would run the association the C-MOVE opens to its destination with two threads of
its own: each sub-operation's request queued to one, the response read and decoded by the
other, the reactor paused and resumed around it. For a study of small images that costs more
than the sending. This association is a plain socket instead: the A-ASSOCIATE is encoded and
decoded with pynetdicom's PDU classes (once), each C-STORE's command set and data set are
written with `wire` (the data set streamed from the spool file as stored, or converted), and
its response is read here, in the thread that sent it.

`StoreLink` offers what pynetdicom's C-MOVE service uses of the `Association` it would have
made (`is_established`, `send_c_store`, `release`, `dul.socket.close()`), so the service's
handling of statuses, failures and C-CANCEL stays pynetdicom's.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from agent.logs import peer_text
from drivers.dicom import wire
from drivers.dicom.fast_store import user_information
from drivers.dicom.retrieve import NotSent, Payload, StoredInstance, chosen, write_c_store

log = structlog.get_logger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
C_STORE_RSP = 0x8001
ERROR_COMMENT = 0x0902  # (0000,0902) of a response's command set
MAX_RESPONSE = 65_536  # a C-STORE response is a few hundred bytes
_RELEASE_RQ = bytes([wire.A_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0])


class LinkError(ConnectionError):
    """The storage association failed; its remaining sub-operations fail too."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """What the agent's AE says and waits for when it requests a storage association."""

    calling_ae: str
    max_pdu: int
    implementation_uid: str
    implementation_version: str
    acse_timeout: float | None
    dimse_timeout: float | None
    connect_timeout: float | None = None  # None: the ACSE timeout

    @classmethod
    def of(cls, ae: AE) -> LinkSettings:
        """The settings `ae` itself would request an association with."""
        return cls(
            calling_ae=str(ae.ae_title),
            max_pdu=ae.maximum_pdu_size,
            implementation_uid=str(ae.implementation_class_uid),
            implementation_version=ae.implementation_version_name or "",
            acse_timeout=ae.acse_timeout,
            dimse_timeout=ae.dimse_timeout,
        )


class _Closer:
    """`dul.socket` as pynetdicom's C-MOVE service closes it after a refused association."""

    def __init__(self, link: StoreLink) -> None:
        self.socket = self
        self._link = link

    def close(self) -> None:
        self._link.close()


class StoreLink:
    """One storage association to a C-MOVE destination, used by one thread."""

    def __init__(self, sock: socket.socket | None, release_timeout: float | None = None) -> None:
        self.sock = sock
        self.release_timeout = release_timeout
        self.dimse_timeout: float | None = None
        self.accepted: list[PresentationContext] = []
        self.peer_max = 0
        self.dul = _Closer(self)

    @property
    def is_established(self) -> bool:
        return self.sock is not None

    @classmethod
    def request(
        cls,
        address: tuple[str, int],
        called_ae: str,
        contexts: list[PresentationContext],
        settings: LinkSettings,
    ) -> StoreLink:
        """Request the association; a link that is not established when it was refused or failed."""
        try:
            return cls.open(address, called_ae, contexts, settings)
        except LinkError as err:
            _log_failed(address, called_ae, str(err))
            return cls(None)

    @classmethod
    def open(
        cls,
        address: tuple[str, int],
        called_ae: str,
        contexts: list[PresentationContext],
        settings: LinkSettings,
    ) -> StoreLink:
        """Request the association; LinkError (with the reason) when it was refused or failed."""
        proposed = []
        for number, context in enumerate(contexts):
            offered = PresentationContext()
            offered.context_id = 2 * number + 1
            offered.abstract_syntax = context.abstract_syntax
            offered.transfer_syntax = list(context.transfer_syntax)
            proposed.append(offered)
        connect = (
            settings.acse_timeout if settings.connect_timeout is None else settings.connect_timeout
        )
        try:
            sock = socket.create_connection(address, timeout=connect)
        except OSError as err:
            raise LinkError(err.strerror or type(err).__name__) from err
        link = cls(sock, settings.acse_timeout)
        try:
            sock.settimeout(settings.acse_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(_request_pdu(called_ae, proposed, settings))
            kind, body = link._read_pdu()
            if kind != wire.A_ASSOCIATE_AC:
                raise LinkError(_refusal(kind, body))
            link._accepted(body, proposed)
        except (OSError, ValueError) as err:
            link.close()
            if isinstance(err, LinkError):
                raise
            raise LinkError(str(err) or type(err).__name__) from err
        sock.settimeout(settings.dimse_timeout)
        link.dimse_timeout = settings.dimse_timeout
        return link

    def _accepted(self, body: bytes, proposed: list[PresentationContext]) -> None:
        pdu = A_ASSOCIATE_AC()
        pdu.decode(bytes([wire.A_ASSOCIATE_AC, 0]) + len(body).to_bytes(4, "big") + body)
        primitive = pdu.to_primitive()
        by_id = {cx.context_id: cx for cx in proposed}
        for result in primitive.presentation_context_definition_results_list:
            offered = by_id.get(result.context_id)
            if offered is None or result.result != 0 or not result.transfer_syntax:
                continue
            accepted = PresentationContext()
            accepted.context_id = result.context_id
            accepted.abstract_syntax = offered.abstract_syntax
            accepted.transfer_syntax = [result.transfer_syntax[0]]
            self.accepted.append(accepted)
        for item in primitive.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max = int(item.maximum_length_received or 0)

    def send_c_store(
        self,
        dataset: Any,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """One C-STORE sub-operation; its response's status (raises when it is not sent)."""
        if self.sock is None:
            raise LinkError("the storage association is closed")
        if not isinstance(dataset, StoredInstance):
            raise TypeError("a storage link sends spool files (StoredInstance)")
        context, payload = chosen(self.accepted, dataset)
        originator = None if originator_aet is None else (originator_aet, originator_id or 0)
        command = wire.encode_store_request(
            msg_id, str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), priority, originator
        )
        try:
            status, comment = self.store(int(context.context_id or 0), command, payload, msg_id)
        except NotSent as err:
            log.warning("qr.instance_not_sent", sop_class=str(dataset.SOPClassUID), reason=str(err))
            raise
        response = Dataset()
        response.Status = status
        if comment:
            response.ErrorComment = comment
        return response

    def store(
        self, context_id: int, command: bytes, payload: Payload, msg_id: int
    ) -> tuple[int, str]:
        """Write a C-STORE request (`payload`: a spool file's data set, or encoded bytes) and
        return its response's Status and ErrorComment; LinkError when the link broke, NotSent
        when the file could not be read (nothing was sent)."""
        if self.sock is None:
            raise LinkError("the storage association is closed")
        try:
            write_c_store(self.sock, context_id, self.peer_max, command, payload)
            return self._response(msg_id)
        except NotSent:
            raise
        except (OSError, wire.ProtocolError) as err:
            self.close()
            if isinstance(err, LinkError):
                raise
            raise LinkError(f"storage association lost: {_lost(err)}") from err

    async def store_on_loop(
        self, parts: Sequence[bytes | memoryview], msg_id: int
    ) -> tuple[int, str]:
        """`store` from the event loop, the socket non-blocking for the while: `parts` are the
        request's PDUs (command and data set, whole in memory). LinkError: the link broke or
        the DIMSE timeout passed (it is closed; so it is when the call is cancelled)."""
        sock = self.sock
        if sock is None:
            raise LinkError("the storage association is closed")
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self.dimse_timeout):
                await loop.sock_sendall(sock, b"".join(parts))
                return await self._response_on_loop(loop, sock, msg_id)
        except (OSError, wire.ProtocolError) as err:  # TimeoutError is an OSError
            self.close()
            raise LinkError(f"storage association lost: {_lost(err)}") from err
        except BaseException:
            self.close()  # cancelled mid-exchange: the association's state is unknown
            raise
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.dimse_timeout)

    async def _response_on_loop(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, msg_id: int
    ) -> tuple[int, str]:
        buffer, command = bytearray(), bytearray()
        while True:
            while len(buffer) < 6 or len(buffer) < 6 + wire.pdu_header(bytes(buffer[:6]))[1]:
                if len(buffer) >= 6 and wire.pdu_header(bytes(buffer[:6]))[1] > MAX_RESPONSE:
                    raise wire.ProtocolError("PDU too long where a response was due")
                chunk = await loop.sock_recv(sock, MAX_RESPONSE)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection")
                buffer += chunk
            kind, length = wire.pdu_header(bytes(buffer[:6]))
            body = bytes(buffer[6 : 6 + length])
            del buffer[: 6 + length]
            found = self._answer(kind, body, msg_id, command)
            if found is not None:
                return found

    def _response(self, msg_id: int) -> tuple[int, str]:
        command = bytearray()
        while True:
            kind, body = self._read_pdu()
            found = self._answer(kind, body, msg_id, command)
            if found is not None:
                return found

    def _answer(
        self, kind: int, body: bytes, msg_id: int, command: bytearray
    ) -> tuple[int, str] | None:
        """The response's (Status, ErrorComment) once `command` is complete with this PDU."""
        if kind != wire.P_DATA_TF:
            raise wire.ProtocolError(f"PDU type 0x{kind:02X} instead of a C-STORE response")
        pos = 0
        while pos < len(body):
            length, _context, control = wire.pdv_header(body[pos : pos + 6])
            if not control & 0x01:
                raise wire.ProtocolError("a data set where a C-STORE response was due")
            command += body[pos + 6 : pos + 6 + length]
            pos += 6 + length
            if control & 0x02:
                elements = wire.parse_command(bytes(command))
                if wire.command_us(elements, wire.COMMAND_FIELD) != C_STORE_RSP or (
                    wire.command_us(elements, wire.MESSAGE_ID_RESPONDED) != msg_id
                ):
                    raise wire.ProtocolError("the response is not for this C-STORE")
                comment = elements.get(ERROR_COMMENT, b"").rstrip(b"\0 ")
                status = wire.command_us(elements, wire.STATUS)
                return status, comment.decode("ascii", "replace")
        return None

    def _read_pdu(self) -> tuple[int, bytes]:
        assert self.sock is not None
        kind, length = wire.pdu_header(_recv_exact(self.sock, 6))
        if length > MAX_RESPONSE:
            raise wire.ProtocolError(f"PDU of {length} bytes where a response was due")
        return kind, _recv_exact(self.sock, length)

    def release(self) -> None:
        """Release the association (an abort when the peer does not answer), then close."""
        sock = self.sock
        if sock is None:
            return
        try:
            sock.settimeout(self.release_timeout)
            sock.sendall(_RELEASE_RQ)
            while True:
                kind, _ = self._read_pdu()
                if kind in (wire.A_RELEASE_RP, wire.A_ABORT):
                    break
        except (OSError, wire.ProtocolError):
            try:
                sock.sendall(wire.abort(0))
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class MovingAE(AE):
    """The SCP's AE: a C-MOVE destination yielded with `store_link=` settings gets a StoreLink."""

    def associate(self, addr: Any, port: int, *args: Any, **kwargs: Any) -> Any:
        settings = kwargs.pop("store_link", None)
        if not isinstance(settings, LinkSettings):
            return super().associate(addr, port, *args, **kwargs)
        contexts = kwargs.get("contexts") or []
        return StoreLink.request((addr, port), kwargs["ae_title"], contexts, settings)


def _request_pdu(
    called_ae: str, contexts: list[PresentationContext], settings: LinkSettings
) -> bytes:
    request = A_ASSOCIATE()
    request.application_context_name = APPLICATION_CONTEXT
    request.calling_ae_title = settings.calling_ae
    request.called_ae_title = called_ae
    request.presentation_context_definition_list = contexts
    request.user_information = user_information(
        settings.max_pdu, settings.implementation_uid, settings.implementation_version
    )
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return bytes(pdu.encode())


def _refusal(kind: int, body: bytes) -> str:
    if kind == wire.A_ASSOCIATE_RJ and len(body) >= 4:
        return f"rejected (result {body[1]}, source {body[2]}, reason {body[3]})"
    if kind == wire.A_ABORT:
        return "aborted"
    return f"answered with PDU type 0x{kind:02X}"


def _log_failed(address: tuple[str, int], called_ae: str, reason: str) -> None:
    log.warning(
        "qr.move_destination_failed",
        peer=f"{address[0]}:{address[1]}",
        called_ae=peer_text(called_ae),
        reason=reason,
    )


def _lost(err: Exception) -> str:
    if isinstance(err, wire.ProtocolError) and str(err).startswith("PDU type 0x07"):
        return "aborted by the peer"
    return type(err).__name__


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        received = sock.recv_into(view[got:])
        if received == 0:
            raise ConnectionResetError("the peer closed the connection")
        got += received
    return bytes(data)
