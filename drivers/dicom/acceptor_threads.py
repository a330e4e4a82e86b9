"""pynetdicom 3.0 tuned for the SCP: acceptor threads survive a late reply and bad PDUs (the
threads that wake on work: agent/dicom_wakeups.py)."""

from __future__ import annotations

import contextlib
import errno
import queue
import socket
from typing import Any

from pynetdicom.fsm import InvalidEventError

# PS3.8 events made from a local primitive: association, release and abort requests, replies, data
_LOCAL_REQUESTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})


def ignore_late_replies(assoc: Any) -> None:
    """Drop a local reply that comes after the association was aborted, instead of dying.

    A peer that sends garbage right after its A-ASSOCIATE-RQ is aborted by the DUL thread
    (Sta13) while the association thread is still deciding; its accept (Evt7) then raises
    InvalidEventError in the DUL thread, which ends with a traceback and the socket left open.
    """
    dul = assoc.dul
    machine = dul.state_machine
    do_action = machine.do_action

    def guarded(event: str) -> None:
        try:
            do_action(event)
        except InvalidEventError:
            if machine.current_state != "Sta13" or event not in _LOCAL_REQUESTS:
                raise
            # The DUL only takes a local primitive off its queue when it acts on it: dropped
            # here, or the DUL would re-raise it forever and never notice the close.
            with contextlib.suppress(queue.Empty):
                dul.to_provider_queue.get(block=False)

    machine.do_action = guarded


def close_when_done(assoc: Any, sock: socket.socket) -> None:
    """Close the connection's socket when the association's DUL thread ends, however it ends.

    On an exception in its reactor pynetdicom sends an A-ABORT and ends the thread without
    closing the socket: the descriptor would stay open, and the connection gate would count
    the connection against its peer's limit for as long as the process lives.
    """
    dul = assoc.dul
    reactor = dul._target  # not started yet: EVT_CONN_OPEN comes before `assoc.start()`

    def run_then_close() -> None:
        try:
            reactor()
        finally:
            sock.close()

    dul._target = run_then_close


def bound_pdu_reads(assoc: Any, largest: int) -> None:
    """Make the association's DUL refuse (close on) a PDU longer than `largest` bytes.

    pynetdicom reads a whole PDU into memory, whatever length the peer declares, even after it
    rejected the association: a peer not allowed to associate could make it buffer gigabytes.
    The refusal is an OSError in its read, which pynetdicom handles as a closed connection.
    """
    association_socket = assoc.dul.socket
    recv = association_socket.recv

    def bounded(nr_bytes: int) -> bytearray:
        if nr_bytes > largest:
            raise OSError(errno.EMSGSIZE, f"a PDU of {nr_bytes} bytes, above {largest}")
        data: bytearray = recv(nr_bytes)
        return data

    association_socket.recv = bounded
