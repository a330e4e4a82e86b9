"""The remote-imaging simulator's storage SCP: an instance is taken only after its study's push."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

from agent.dicom_wakeups import close_wakeups, use_wakeups, wake_on_work
from drivers.dicom.server import ContextList

if TYPE_CHECKING:
    from agent.simulators.remote_imaging import (
        Received,
        RemoteFaults,
        RemoteImagingSimulatorConfig,
    )

NOT_PUSHED = 0xC001  # an instance of a study no exam/push announced
TAGS_DIFFER = 0xC002  # PatientID / AccessionNumber differ from the pushed JSON
OUT_OF_RESOURCES = 0xA700  # the answer while the platform is down in "unavailable" mode


@dataclass(frozen=True)
class Stored:
    """One accepted instance: the dataset bytes as received, and their transfer syntax."""

    data: bytes
    transfer_syntax: str
    calling_ae: str


class StorageScp:
    """C-STOREs on pynetdicom's threads, checked against `studies`, recorded in `received`."""

    def __init__(
        self,
        config: RemoteImagingSimulatorConfig,
        faults: RemoteFaults,
        received: Received,
        arrived: asyncio.Condition,
    ) -> None:
        self.ae_title = config.ae_title
        self.host = config.host
        self.port = config.dicom_port
        self.faults = faults
        self.received = received
        self.arrived = arrived  # notified (on the loop) whenever `received` changes
        self.studies: dict[str, tuple[str, str]] = {}  # studyUID -> (patientID, accessionNo)
        self.lock = threading.Lock()  # studies and received, shared with the SCP threads
        self.released = threading.Event()  # set: held C-STOREs are answered
        self.unavailable = False  # answer every C-STORE OUT_OF_RESOURCES
        self.record: Callable[..., None] | None = None  # the simulator's received list
        self._server: ThreadedAssociationServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Listen (port 0: a free port, kept for the next start)."""
        self._loop = asyncio.get_running_loop()
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        use_wakeups()  # a platform answers as fast as it can: no polling delay on our side
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_CONN_OPEN, lambda event: wake_on_work(event.assoc)),
            (evt.EVT_CONN_CLOSE, lambda event: close_wakeups(event.assoc)),
        ]
        server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        assert server is not None
        # Not a deep copy of every storage context per association (≈ 0.15 s of CPU each: a
        # drain's hundred associations cost the benchmark's platform 15 s).
        server.contexts = ContextList(server.contexts)
        self.port = server.server_address[1]
        self._server = server

    def stop(self) -> None:
        """Abort the associations and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            for assoc in server.active_associations:
                assoc.abort()
            server.shutdown()

    async def closed(self) -> None:
        """After `stop`: pynetdicom's threads end by themselves."""

    def _on_accepted(self, event: evt.Event) -> None:
        with self.lock:
            self.received.associations += 1
        self._notify()

    def _on_store(self, event: evt.Event) -> Dataset:
        self.received.requests += 1
        if self.faults.hold:
            self.received.held += 1
            self._notify()
            self.released.wait()
        if self.faults.dicom_delay > 0:  # this association's thread only, as a far platform
            time.sleep(self.faults.dicom_delay)
        ds = event.dataset
        sop = str(ds.SOPInstanceUID)
        found = (str(ds.get("PatientID", "") or ""), str(ds.get("AccessionNumber", "") or ""))
        status, why = self._verdict(str(ds.get("StudyInstanceUID", "")), found)
        stored = status in (0x0000, 0x0001) or 0xB000 <= status <= 0xBFFF
        with self.lock:
            if stored:
                data = _dataset_bytes(event) if self.faults.dicom_keep else b""
                syntax = str(event.context.transfer_syntax)
                self.received.instances[sop] = Stored(data, syntax, event.assoc.requestor.ae_title)
            else:
                self.received.dicom_refused.append((sop, status, why))
        self._notify()
        self._record(event, sop, "accepted" if stored else "refused", status, why)
        answer = Dataset()
        answer.Status = status
        if why:
            answer.ErrorComment = why[:64]
        return answer

    def _verdict(self, study: str, found: tuple[str, str]) -> tuple[int, str]:
        """The status for an instance of `study` with `found` (PatientID, AccessionNumber),
        and why when it is not success."""
        faults = self.faults
        if self.unavailable:
            return OUT_OF_RESOURCES, "down (unavailable)"
        if faults.dicom_status_next > 0:
            faults.dicom_status_next -= 1
            return faults.dicom_status, "fault switch dicom_status_next"
        with self.lock:
            pushed = self.studies.get(study)
        if pushed is None:
            return NOT_PUSHED, "no exam pushed for this StudyInstanceUID"
        if found != pushed:
            tag = "PatientID" if found[0] != pushed[0] else "AccessionNumber"
            return TAGS_DIFFER, f"{tag} differs from the pushed exam"
        return 0x0000, ""

    def _record(self, event: evt.Event, sop: str, verdict: str, status: int, why: str) -> None:
        """Add the C-STORE to the simulator's received list, on the loop."""
        loop, record = self._loop, self.record
        if loop is None or loop.is_closed() or record is None:
            return
        ds = event.dataset
        body = {
            "SOPInstanceUID": sop,
            "SOPClassUID": str(ds.get("SOPClassUID", "")),
            "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
            "transfer_syntax": str(event.context.transfer_syntax),
            "calling_ae": event.assoc.requestor.ae_title,
        }
        note = functools.partial(record, "C-STORE", verdict, status, why, key=sop, body=body)
        loop.call_soon_threadsafe(note)

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._wake(), loop)

    async def _wake(self) -> None:
        async with self.arrived:
            self.arrived.notify_all()


def _dataset_bytes(event: evt.Event) -> bytes:
    """The data set as received, whether pynetdicom kept it in memory or wrote it to a file.

    An agent's storage SCP switches pynetdicom (process-wide) to receiving into files.
    """
    if _config.STORE_RECV_CHUNKED_DATASET:
        with Path(event.dataset_path).open("rb") as fp:
            read_preamble(fp, False)
            _read_file_meta_info(fp)
            return fp.read()
    return event.request.DataSet.getvalue()  # type: ignore[union-attr]
