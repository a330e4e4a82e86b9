"""The lean acceptor: plain storage associations served in their own thread, not by pynetdicom.

pynetdicom's acceptor passes every P-DATA through three threads and a pure-Python state machine;
for a modality sending small images one after another that costs more than the fsyncs. An
association that proposes only storage and verification, with no extended negotiation, is served
here instead: PDVs stream from the socket into the spool file, the command set is decoded and the
response encoded by `wire`, and `Receiver.store` does the same checks and commit as for pynetdicom.
Everything else (Q/R, C-GET's role selection, user identity, malformed requests, and every
rejection) goes to pynetdicom untouched: the request is only peeked at until accepted here.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from agent.events import utcnow
from agent.logs import peer_text
from agent.vocabulary.kill_points import kill_point
from drivers.dicom import wire
from drivers.dicom.peer_log import OncePer
from drivers.dicom.receiver import SUCCESS, Commit, Receiver
from drivers.dicom.seal import meta_elements
from drivers.dicom.store import SealedFile
from drivers.dicom.syntaxes import SyntaxPolicy

log = structlog.get_logger(__name__)

MAX_REQUEST = 32_768  # larger A-ASSOCIATE-RQs are left to pynetdicom (peeking needs buffer room)
MAX_COMMAND = 65_536  # a command set is a few hundred bytes
BUFFER = 262_144
# Acknowledged images of one association whose commit may be outstanding: the journal's group
# commit keeps up unless it is failing, and then the association slows down instead of growing.
MAX_UNCOMMITTED = 256
_SEAL_ELEMENTS = meta_elements()
_PLAIN_USER_ITEMS = (
    MaximumLengthNotification,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    AsynchronousOperationsWindowNegotiation,  # absent from the reply: the default, one at a time
)


class FastStore:
    """Decides which associations are plain storage and serves them (one call per connection)."""

    def __init__(
        self,
        receiver: Receiver,
        contexts: Iterable[PresentationContext],
        policy: SyntaxPolicy,
        *,
        max_pdu: int,
        max_associations: int,
        acse_timeout: float,
        network_timeout: float,
        implementation_uid: str,
        implementation_version: str,
    ) -> None:
        self.receiver = receiver
        self.contexts = list(contexts)
        self.policy = policy
        self.abstract_syntaxes = frozenset(str(cx.abstract_syntax) for cx in self.contexts)
        self.max_pdu = max_pdu
        self.max_associations = max_associations
        self.acse_timeout = acse_timeout
        self.network_timeout = network_timeout
        self.implementation_uid = implementation_uid
        self.implementation_version = implementation_version
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopping = False
        self.served = 0  # associations accepted here
        self.abort_lines = OncePer()  # a peer aborted in a loop gets a line per reason, not each
        receiver.lean_active = lambda: self.active

    def serve(self, sock: socket.socket, address: Any, others: int) -> bool:
        """Serve the connection if it asks for a plain storage association; False: not taken."""
        raw = peek_request(sock, self.acse_timeout)
        if raw is None:
            return False
        request = A_ASSOCIATE_RQ()
        try:
            request.decode(raw)
            primitive = request.to_primitive()
        except Exception:  # whatever pynetdicom makes of it, it answers it
            return False
        peer = str(address[0])
        calling = str(primitive.calling_ae_title).strip()
        # Rejections stay pynetdicom's: a pynetdicom requestor whose DUL thread has read the
        # A-ASSOCIATE-RJ and closed before its association thread looks at the connection
        # reports an abort, not the rejection. An RJ from here comes that fast; pynetdicom's not.
        if not self._plain(primitive) or self.receiver.refusal(peer, calling) is not None:
            return False
        if not self._enter(sock, others):
            return False
        _recv_exact(sock, len(raw), memoryview(bytearray(len(raw))))  # now it is ours
        try:
            self._serve(sock, primitive, peer, calling)
        finally:
            with self._lock:
                self._sockets.discard(sock)
        return True

    @property
    def active(self) -> int:
        """Associations being served here now."""
        with self._lock:
            return len(self._sockets)

    def stop(self) -> None:
        """Shut every served connection down (its thread then ends); refuse new ones."""
        with self._lock:
            self._stopping = True
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _plain(self, primitive: A_ASSOCIATE) -> bool:
        items = primitive.user_information or []
        if not all(isinstance(item, _PLAIN_USER_ITEMS) for item in items):
            return False
        proposed = primitive.presentation_context_definition_list or []
        return bool(proposed) and all(
            str(cx.abstract_syntax) in self.abstract_syntaxes for cx in proposed
        )

    def _enter(self, sock: socket.socket, others: int) -> bool:
        with self._lock:
            if self._stopping or len(self._sockets) + others >= self.max_associations:
                return False
            self._sockets.add(sock)
            self.served += 1
        with self.receiver._lock:
            self.receiver.associations += 1
        return True

    def _serve(self, sock: socket.socket, request: A_ASSOCIATE, peer: str, calling: str) -> None:
        results, _ = self.policy.negotiate(
            request.presentation_context_definition_list, self.contexts, None, calling
        )
        accepted = {
            int(cx.context_id): str(cx.transfer_syntax[0])
            for cx in results
            if cx.result == 0x00 and cx.context_id is not None
        }
        peer_max = 0
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                peer_max = int(item.maximum_length_received or 0)
        association = _Association(
            self, sock, (peer, calling), contexts=accepted, peer_max=peer_max
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.network_timeout)
        try:
            sock.sendall(
                association_accept(
                    request,
                    results,
                    self.max_pdu,
                    self.implementation_uid,
                    self.implementation_version,
                )
            )
            association.run()
        except wire.ProtocolError as err:
            association.abort(wire.ABORT_UNEXPECTED_PDU, str(err))
        except TimeoutError:
            association.abort(wire.ABORT_UNEXPECTED_PDU, "network_timeout")
        except OSError as err:  # reset, or shut down by `stop`
            association.lost(err)
        except Exception as err:  # a bug must not take the listener down
            log.exception("dicom.association_failed", source=self.receiver.source, peer=peer)
            association.abort(wire.ABORT_UNEXPECTED_PDU, type(err).__name__)
        finally:
            association.discard_pending()


def association_accept(
    request: A_ASSOCIATE,
    results: list[PresentationContext],
    max_pdu: int,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """The A-ASSOCIATE-AC PDU accepting `request` with `results`, our user information in it."""
    accept = A_ASSOCIATE()
    accept.application_context_name = request.application_context_name
    accept.calling_ae_title = request.calling_ae_title
    accept.called_ae_title = request.called_ae_title
    accept.result = 0x00
    accept.result_source = 0x01
    accept.presentation_context_definition_results_list = results
    accept.user_information = user_information(max_pdu, implementation_uid, implementation_version)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(accept)
    return bytes(pdu.encode())


@dataclass(slots=True)
class _Pending:
    """A C-STORE-RQ (or another request with a data set) whose data set is arriving."""

    context_id: int
    command: int
    message_id: int
    sop_class: str
    sop_instance: str
    file: SealedFile | None
    error: OSError | None = None


class _Association:
    """One accepted plain storage association: P-DATA in, DIMSE responses out."""

    def __init__(
        self,
        fast: FastStore,
        sock: socket.socket,
        peer: tuple[str, str],
        *,
        contexts: dict[int, str],
        peer_max: int,
    ) -> None:
        self.fast = fast
        self.sock = sock
        self.peer, self.calling = peer  # address, calling AE title
        self.contexts = contexts  # accepted context ID → transfer syntax
        self.peer_max = peer_max
        self.command = bytearray()
        self.pending: _Pending | None = None
        self.view = memoryview(bytearray(BUFFER))
        self.commits: list[Commit] = []  # of images answered, awaited before the release

    def run(self) -> None:
        """Serve PDUs until the peer releases or aborts the association."""
        while True:
            kind, length = wire.pdu_header(self._recv(6))
            if kind == wire.P_DATA_TF:
                self._p_data(length)
            elif kind == wire.A_RELEASE_RQ:
                self._recv(length)
                # Journaled when the association ends, as long as the journal keeps up: a peer
                # that queries right after sending finds its images.
                self.fast.receiver.await_commits(self.commits)
                self.commits.clear()
                self.sock.sendall(wire.release_rp())
                await_close(self.sock, self.fast.acse_timeout)
                return
            elif kind == wire.A_ABORT:
                self._recv(length)
                return
            else:
                raise wire.ProtocolError(f"unexpected PDU type 0x{kind:02X}")

    def _p_data(self, length: int) -> None:
        while length > 0:
            if length < 6:  # reading on would take the next PDU's bytes for this item's header
                raise wire.ProtocolError("P-DATA-TF PDU ends inside a PDV item header")
            size, context_id, control = wire.pdv_header(self._recv(6))
            length -= 6 + size
            if length < 0:
                raise wire.ProtocolError("PDV item overruns its P-DATA-TF PDU")
            if context_id not in self.contexts:
                raise wire.ProtocolError(f"presentation context {context_id} was not accepted")
            if control & 0x01:
                if self.pending is not None or len(self.command) + size > MAX_COMMAND:
                    raise wire.ProtocolError("unexpected or oversized command fragment")
                self.command += self._recv(size)
                if control & 0x02:
                    self._command_done(context_id)
            else:
                pending = self.pending
                if pending is None or pending.context_id != context_id:
                    raise wire.ProtocolError("data set fragment without its command")
                self._receive_data(pending, size)
                if control & 0x02:
                    self._data_done(pending)  # if it fails, `discard_pending` still sees it
                    self.pending = None

    def _command_done(self, context_id: int) -> None:
        elements = wire.parse_command(bytes(self.command))
        self.command.clear()
        command = wire.command_us(elements, wire.COMMAND_FIELD)
        if command == wire.C_CANCEL_RQ:
            return
        message_id = wire.command_us(elements, wire.MESSAGE_ID)
        with_data = wire.command_us(elements, wire.DATASET_TYPE) != wire.NO_DATASET
        sop_class = wire.command_uid(elements, wire.AFFECTED_SOP_CLASS)
        sop_instance = wire.command_uid(elements, wire.AFFECTED_SOP_INSTANCE)
        pending = _Pending(context_id, command, message_id, sop_class, sop_instance, None)
        if not with_data:
            status = SUCCESS if command == wire.C_ECHO_RQ else wire.UNRECOGNIZED_OPERATION
            self._respond(pending, status)
            return
        if command == wire.C_STORE_RQ:
            meta = wire.file_meta(
                sop_class,
                sop_instance,
                self.contexts[context_id],
                self.fast.implementation_uid,
                self.fast.implementation_version,
                extra=_SEAL_ELEMENTS,
            )
            try:
                pending.file = self.fast.receiver.spool.sealed_file(meta)
            except OSError as err:
                pending.error = err
        self.pending = pending

    def _receive_data(self, pending: _Pending, size: int) -> None:
        view = self.view
        while size:
            received = self.sock.recv_into(view, min(size, len(view)))
            if received == 0:
                raise ConnectionResetError("the peer closed the connection")
            if pending.file is not None:
                pending.file.write(view[:received])
            size -= received

    def _data_done(self, pending: _Pending) -> None:
        receiver = self.fast.receiver
        commit = None
        if pending.command != wire.C_STORE_RQ:
            status = wire.UNRECOGNIZED_OPERATION
        elif pending.file is None:
            assert pending.error is not None
            status = receiver.write_failed(pending.error)
        elif pending.file.error is not None:
            pending.file.discard()
            status = receiver.write_failed(pending.file.error)
        else:
            status, commit = receiver.store_sealed(pending.file, self.calling, utcnow())
        self._respond(pending, status)
        if commit is not None:
            kill_point("dicom.answered")  # answered, the commit may be outstanding
            self._keep(commit)

    def _keep(self, commit: Commit) -> None:
        commits = self.commits
        commits.append(commit)
        if len(commits) >= MAX_UNCOMMITTED:
            commits[:] = [c for c in commits if not c.done()]
            if len(commits) >= MAX_UNCOMMITTED:
                self.fast.receiver.await_commits(commits[: MAX_UNCOMMITTED // 2])
                del commits[: MAX_UNCOMMITTED // 2]

    def _respond(self, request: _Pending, status: int) -> None:
        response = wire.encode_response(
            request.command, request.message_id, status, request.sop_class, request.sop_instance
        )
        self.sock.sendall(wire.p_data_command(request.context_id, response, self.peer_max))

    def _recv(self, size: int) -> bytes:
        data = bytearray(size)
        _recv_exact(self.sock, size, memoryview(data))
        return bytes(data)

    def abort(self, reason: int, why: str) -> None:
        """Send an A-ABORT (best effort) and log why (once per peer and reason for a while)."""
        repeated = self.fast.abort_lines.first((self.peer, why))
        if repeated is not None:
            log.warning(
                "dicom.association_aborted",
                source=self.fast.receiver.source,
                peer=self.peer,
                calling_ae=peer_text(self.calling),
                reason=why,
                repeated=repeated or None,
            )
        _send_quietly(self.sock, wire.abort(reason))
        await_close(self.sock, self.fast.acse_timeout)

    def lost(self, err: OSError) -> None:
        """The connection ended without a release (peer reset, or the agent is stopping)."""
        if self.pending is None and not self.command:
            return
        error = err.strerror or type(err).__name__
        repeated = self.fast.abort_lines.first((self.peer, error))
        if repeated is not None:
            log.warning(
                "dicom.association_lost",
                source=self.fast.receiver.source,
                peer=self.peer,
                calling_ae=peer_text(self.calling),
                error=error,
                repeated=repeated or None,
            )

    def discard_pending(self) -> None:
        """Delete the reserved file of a data set that never completed."""
        pending, self.pending = self.pending, None
        if pending is not None and pending.file is not None:
            pending.file.discard()


def user_information(max_pdu: int, implementation_uid: str, version: str) -> list[Any]:
    """The A-ASSOCIATE user information items the agent sends (as requestor or acceptor)."""
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = implementation_uid
    items: list[Any] = [max_length, implementation]
    if version:
        name = ImplementationVersionNameNotification()
        name.implementation_version_name = version
        items.append(name)
    return items


def peek_request(sock: socket.socket, timeout: float) -> bytes | None:
    """The whole A-ASSOCIATE-RQ PDU left unread in `sock`, or None if it isn't one we can take."""
    flags = socket.MSG_PEEK | socket.MSG_WAITALL
    sock.settimeout(timeout)
    try:
        header = sock.recv(6, flags)
        if len(header) < 6 or header[0] != wire.A_ASSOCIATE_RQ:
            return None
        _, length = wire.pdu_header(header)
        if length > MAX_REQUEST:
            return None
        raw = sock.recv(6 + length, flags)
    except OSError:  # includes the timeout: pynetdicom will time out and answer it
        return None
    finally:
        sock.settimeout(None)
    return raw if len(raw) == 6 + length else None


def _recv_exact(sock: socket.socket, size: int, view: memoryview) -> None:
    got = 0
    while got < size:
        received = sock.recv_into(view[got:size])
        if received == 0:
            raise ConnectionResetError("the peer closed the connection")
        got += received


def await_close(sock: socket.socket, timeout: float) -> None:
    """After a release or abort: let the peer close first (PS3.8 Sta13, ARTIM), reading nothing.

    Closing at once can reach the peer before it has read our last PDU; it would then see an
    aborted connection instead of the release it was sent.
    """
    sock.settimeout(timeout)
    try:
        while sock.recv(65_536):
            pass
    except OSError:
        pass


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass
