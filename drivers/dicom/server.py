"""pynetdicom's threaded server behind the connection gate; requests go to the lean path first."""

from __future__ import annotations

import copy
import socket
import sys
import threading
from typing import Any

from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from drivers.dicom.fast_store import FastStore
from drivers.dicom.gate import ConnectionGate, GateLimits
from drivers.dicom.peer_log import GATE_THREAD


class ContextList(list[PresentationContext]):
    """The server's supported contexts, copied cheaply for each association.

    pynetdicom gives each accepted association a `deepcopy` of them: with every storage SOP
    class and transfer syntax, 54 ms of UID validation per association (each C-FIND, C-MOVE,
    each pynetdicom-served store). A context holds immutable UIDs and flags; a copy of it with
    its own list of transfer syntaxes is as independent as the deep copy.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for context in self:
            twin = copy.copy(context)
            twin._transfer_syntax = list(context._transfer_syntax)
            copies.append(twin)
        return copies


class GatedServer(ThreadedAssociationServer):
    """Accepts through a `ConnectionGate`; a complete request goes to `fast`, else pynetdicom."""

    fast: FastStore | None = None
    gate: ConnectionGate | None = None
    request_queue_size = 128  # socketserver's 5 drops the SYNs of a burst before the gate sees it

    def server_bind(self) -> None:
        """Bind as pynetdicom does, but exclusively on Windows: there its SO_REUSEADDR would let
        another program (or a second agent) bind the same port and take part of the traffic."""
        if sys.platform != "win32":
            super().server_bind()
            return
        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        if self.ae.network_timeout is not None:
            self.socket.settimeout(self.ae.network_timeout)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def start(self, source: str, limits: GateLimits) -> None:
        """Start the gate's thread on the bound socket."""
        assert self.socket is not None  # bound by the constructor
        self.contexts = ContextList(self.contexts)
        self.gate = ConnectionGate(source, self.socket, limits, self.process_request)
        port = self.server_address[1]
        threading.Thread(target=self.gate.run, name=f"{GATE_THREAD}-{port}", daemon=True).start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the lean acceptor, or else pynetdicom."""
        fast = self.fast
        if fast is not None and isinstance(request, socket.socket):
            try:
                if fast.serve(request, client_address, len(self.active_associations)):
                    request.close()
                    return
            except OSError:
                request.close()
                return
        super().finish_request(request, client_address)

    def shutdown(self) -> None:
        """Stop the gate, close the listening socket, leave the AE's server list."""
        if self.gate is not None:
            self.gate.stop()
        self.server_close()
        if self in self.ae._servers:
            self.ae._servers.remove(self)
