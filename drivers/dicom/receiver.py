"""pynetdicom event handlers (run in its threads): association checks, C-ECHO and C-STORE."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pynetdicom import events as evt

from agent.dicom_wakeups import Wakeups
from agent.errors import JournalClosedError
from agent.events import Event, utcnow
from agent.logs import peer_text
from agent.vocabulary.kill_points import kill_point
from drivers.base import DriverContext, ThreadEmitter, ThreadSubmitter
from drivers.dicom.acceptor_threads import (
    bound_pdu_reads,
    close_when_done,
    ignore_late_replies,
)
from drivers.dicom.gate import MAX_REQUEST
from drivers.dicom.peer_log import OncePer
from drivers.dicom.reservoir import release
from drivers.dicom.store import SealedFile, Spool, SpoolFile
from drivers.dicom.tags import UnreadableDataset, read_identity

log = structlog.get_logger(__name__)

Commit = concurrent.futures.Future[list[bool]] | concurrent.futures.Future[bool]
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# A-ASSOCIATE-RJ (result, source, diagnostic): rejected-permanent by the service user.
REJECTIONS = {
    "calling_ae_not_allowed": (0x01, 0x01, 0x03),
    "address_not_allowed": (0x01, 0x01, 0x01),  # "no reason given": the standard has none
    "busy": (0x02, 0x03, 0x02),  # rejected-transient, provider (presentation), local limit
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Receiver:
    """Answers associations and C-STOREs; 0x0000 only after the file and its event are durable."""

    def __init__(
        self,
        source: str,
        ctx: DriverContext,
        loop: asyncio.AbstractEventLoop,
        spool: Spool,
        *,
        allowed_aes: Sequence[str],
        allowed_networks: Sequence[Network],
        min_free_mb: float,
        commit_timeout: float,
        receive: Literal["file", "memory"],
    ) -> None:
        self.source = source
        self.ctx = ctx
        self.loop = loop
        self.spool = spool
        self.allowed_aes = frozenset(ae.strip() for ae in allowed_aes)
        self.allowed_networks = tuple(allowed_networks)
        self.min_free_mb = min_free_mb
        self.commit_timeout = commit_timeout
        self.receive = receive
        self._direct = ctx if isinstance(ctx, ThreadEmitter) else None
        self._submitter = ctx if isinstance(ctx, ThreadSubmitter) else None
        self.stored = 0
        self.refused: dict[str, int] = {}
        self.associations = 0  # connections accepted since start
        self._disk_low = False
        self._lock = threading.Lock()
        self._rejection_lines = OncePer()
        self.lean_active: Callable[[], int] = lambda: 0  # associations the lean acceptor serves

    def handlers(self) -> list[Any]:
        """The (event, handler) pairs to bind on the AE's server."""
        return [
            (evt.EVT_CONN_OPEN, self.on_connection),
            (evt.EVT_CONN_CLOSE, self.on_connection_closed),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]

    def on_connection(self, event: Any) -> None:
        """Bound PDU reads; disable Nagle (small responses must not wait for a delayed ACK)."""
        with self._lock:
            self.associations += 1
        ignore_late_replies(event.assoc)
        largest = int(event.assoc.acceptor.maximum_length or 0)  # 0: max_pdu is unlimited
        if largest:
            bound_pdu_reads(event.assoc, 6 + max(largest, MAX_REQUEST))
        sock = event.assoc.dul.socket.socket
        if sock is not None:
            close_when_done(event.assoc, sock)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Wakeups.install(event.assoc, sock)

    def on_connection_closed(self, event: Any) -> None:
        """Release the association's wake-up pipe."""
        wakeups = getattr(event.assoc.dul, "_edge_wait", None)
        if isinstance(wakeups, Wakeups):
            wakeups.close()

    def on_requested(self, event: Any) -> None:
        """Reject (A-ASSOCIATE-RJ) a peer that is not allowed, or one too many associations."""
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        address = str(assoc.requestor.address)
        reason = self.refusal(address, calling)
        if reason is None:
            acceptors = sum(1 for other in assoc.ae.active_associations if other.is_acceptor)
            if self.lean_active() + acceptors > assoc.ae.maximum_associations:
                reason = "busy"
        if reason is not None:
            self._count_refusal(address, calling, reason)
            assoc.acse.send_reject(*REJECTIONS[reason])
            assoc.kill()  # as pynetdicom's own rejections do: waits until the A-ASSOCIATE-RJ is out

    def refusal(self, address: str, calling: str) -> str | None:
        """Why a peer is not allowed to associate (a key of REJECTIONS), or None."""
        if self.allowed_networks and not self._address_allowed(address):
            return "address_not_allowed"
        if self.allowed_aes and calling not in self.allowed_aes:
            return "calling_ae_not_allowed"
        return None

    def _count_refusal(self, address: str, calling: str, reason: str) -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        repeated = self._rejection_lines.first((address, calling, reason))
        if repeated is not None:
            log.warning(
                "dicom.association_rejected",
                source=self.source,
                peer=address,
                calling_ae=peer_text(calling),
                reason=reason,
                repeated=repeated or None,
            )

    def _address_allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed_networks)

    def on_echo(self, event: Any) -> int:
        """C-ECHO: always success."""
        return SUCCESS

    def on_store(self, event: Any) -> int:
        """pynetdicom's C-STORE: take the received file and `store` it."""
        received = utcnow()
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            temp = self._received_file(event)
        except OSError as err:
            return self.write_failed(err)
        return self.store(temp, calling, received)

    def store(self, temp: Path, calling: str, received: datetime) -> int:
        """Check the reserve, identify, fsync, rename, emit and wait for the commit; the status."""
        free = self.spool.free_mb()
        if free < self.min_free_mb:
            temp.unlink(missing_ok=True)
            return self._out_of_space(None, free)
        self._set_disk_low(False, free)
        try:
            identity = read_identity(temp)
        except UnreadableDataset as err:
            return self._quarantine(temp, err.reason, calling, received)
        try:
            path = self.spool.commit(temp, received)
        except OSError as err:
            temp.unlink(missing_ok=True)
            return self._out_of_space(f"commit failed: {err.strerror or err}")
        payload = {
            "path": str(path.absolute()),
            "size": path.stat().st_size,
            **identity,
            "calling_ae": calling,
            "received_via": "c-store",
        }
        committed = self._emit(Event("dicom.stored", self.source, payload, occurred_at=received))
        if not committed:
            # Keep the file unless the event surely is not journaled: it may yet refer to it.
            if committed is False:
                path.unlink(missing_ok=True)
            return OUT_OF_RESOURCES
        with self._lock:
            self.stored += 1
        return SUCCESS

    def store_sealed(
        self, file: SealedFile, calling: str, received: datetime
    ) -> tuple[int, Commit | None]:
        """The lean path: check the reserve, identify, seal (the one flush), queue the event;
        the status, and the commit to await before the association ends (docs/dicom.md)."""
        path = file.path
        free = self.spool.free_mb()
        if free < self.min_free_mb:
            file.discard()
            return self._out_of_space(None, free), None
        self._set_disk_low(False, free)
        try:
            identity = read_identity(path)
        except UnreadableDataset as err:
            file.close()
            release(file.name)
            return self._quarantine(path, err.reason, calling, received), None
        kill_point("dicom.received")  # complete in the page cache, not sealed
        try:
            file.seal(received, calling)
        except OSError as err:
            file.discard()
            return self._out_of_space(f"seal failed: {err.strerror or err}"), None
        kill_point("dicom.synced")  # durable, not answered
        payload = {
            "path": str(path.absolute()),
            "size": file.size,
            **identity,
            "calling_ae": calling,
            "received_via": "c-store",
        }
        # The file's name is the event's id: the start-up scan journals the same event again.
        event = Event("dicom.stored", self.source, payload, occurred_at=received, id=path.stem)
        try:
            commit = self._submit(event)
        except JournalClosedError:  # the agent is stopping: surely not journaled, the peer resends
            path.unlink(missing_ok=True)
            return OUT_OF_RESOURCES, None
        commit.add_done_callback(lambda _: kill_point("dicom.committed"))  # the writer's thread
        with self._lock:
            self.stored += 1
        return SUCCESS, commit

    def _submit(self, event: Event) -> Commit:
        if self._submitter is not None:
            return self._submitter.submit_from_thread(event)
        try:
            return asyncio.run_coroutine_threadsafe(self.ctx.emit(event), self.loop)
        except RuntimeError as err:  # the loop is closed
            raise JournalClosedError("the agent is stopping") from err

    def await_commits(self, commits: list[Commit]) -> None:
        """Wait for acknowledged images' commits (at most `commit_timeout` in all); a failure is
        logged: the sealed file stays and the next start journals it."""
        deadline = time.monotonic() + self.commit_timeout
        for commit in commits:
            try:
                commit.result(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.error("dicom.commit_timeout", source=self.source, timeout=self.commit_timeout)
                return
            except BaseException as err:  # the journal failed: the start-up scan repairs it
                log.error("dicom.commit_failed", source=self.source, error=type(err).__name__)

    def write_failed(self, err: OSError) -> int:
        """The status for a received data set that could not be written (disk full)."""
        return self._out_of_space(f"write failed: {err.strerror or err}")

    def _received_file(self, event: Any) -> Path:
        if self.receive == "memory":
            return self.spool.write_temp(event.encoded_dataset(include_meta=True))
        spool_file = getattr(event.request, "_dataset_file", None)
        if isinstance(spool_file, SpoolFile):
            spool_file.close()
            if spool_file.error is not None:
                spool_file.discard()
                raise spool_file.error
        return Path(event.dataset_path)

    def _out_of_space(self, why: str | None, free: float | None = None) -> int:
        free = self.spool.free_mb() if free is None else free
        self._set_disk_low(True, free, why)
        return OUT_OF_RESOURCES

    def _set_disk_low(self, low: bool, free: float, why: str | None = None) -> None:
        with self._lock:
            changed = low != self._disk_low
            self._disk_low = low
            if low:
                self.refused["disk_low"] = self.refused.get("disk_low", 0) + 1
        if not changed:
            return
        if low:
            log.error(
                "dicom.disk_low",
                source=self.source,
                free_mb=round(free),
                reserve_mb=self.min_free_mb,
                detail=why,
            )
            payload = {"reason": "disk_low", "free_mb": round(free)}
            self._emit(Event("dicom.rejected", self.source, payload))
        else:
            log.info("dicom.disk_ok", source=self.source, free_mb=round(free))

    def _quarantine(self, temp: Path, reason: str, calling: str, received: Any) -> int:
        size = temp.stat().st_size
        try:
            kept = self.spool.quarantine(temp, received)
        except OSError as err:
            temp.unlink(missing_ok=True)
            log.error("dicom.quarantine_failed", source=self.source, error=str(err))
            return CANNOT_UNDERSTAND
        with self._lock:
            self.refused["quarantined"] = self.refused.get("quarantined", 0) + 1
        log.warning(
            "dicom.quarantined",
            source=self.source,
            reason=reason,
            calling_ae=peer_text(calling),
            file=kept.name,
            size=size,
        )
        payload = {"reason": reason, "quarantined": str(kept), "calling_ae": calling, "size": size}
        self._emit(Event("dicom.rejected", self.source, payload, occurred_at=received))
        return CANNOT_UNDERSTAND

    def _emit(self, event: Event) -> bool | None:
        """Journal `event`, wait for the commit: True, False (surely not), None (it may be)."""
        try:
            self._commit(event)
        except JournalClosedError:  # the agent is stopping, the job never ran: the peer resends
            return False
        except TimeoutError:
            log.error(
                "dicom.commit_timeout",
                source=self.source,
                kind=event.kind,
                timeout=self.commit_timeout,
            )
            return None
        except BaseException as err:  # any failure of the journal: the peer must resend
            log.error(
                "dicom.commit_failed", source=self.source, kind=event.kind, error=type(err).__name__
            )
            return None
        return True

    def _commit(self, event: Event) -> None:
        if self._direct is not None:
            self._direct.emit_from_thread(event, self.commit_timeout)
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self.ctx.emit(event), self.loop)
        except RuntimeError as err:  # the loop is closed
            raise JournalClosedError("the agent is stopping") from err
        try:
            future.result(self.commit_timeout)
        except TimeoutError:
            future.cancel()
            raise
