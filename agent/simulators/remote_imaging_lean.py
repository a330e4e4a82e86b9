"""The remote-imaging simulator's storage SCP on its event loop, without pynetdicom's per-PDU cost.

pynetdicom's acceptor passes each PDU through three threads and a state machine: answering a
small image cost the platform ≈ 2 ms of CPU, 2.5× the forwarding agent's, so on a two-core
machine a benchmark measured the platform as much as the agent. This SCP speaks the same
protocol from asyncio streams (`wire` for PDUs and command sets, pynetdicom's PDU classes only
for the A-ASSOCIATE, once per association) and applies `StorageScp`'s checks and faults: called
AE title, storage SOP classes in any transfer syntax, an instance only after its study's push
with the pushed PatientID and AccessionNumber, `dicom_delay`, `hold`, down modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import deque
from typing import Any

from pydicom import dcmread
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
)
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import MaximumLengthNotification
from pynetdicom.presentation import PresentationContext

from agent.simulators.remote_imaging_scp import StorageScp, Stored
from drivers.dicom import wire
from drivers.dicom.fast_store import association_accept
from drivers.dicom.tags import routing_of

MAX_PDU = 16_382  # what pynetdicom's AE offers by default: the agent sends as it would to it
STORAGE = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
SYNTAXES = frozenset(str(uid) for uid in ALL_TRANSFER_SYNTAXES)
MAX_PDU_IN = 4 * 1024 * 1024  # a longer PDU is a broken peer: abort
TIMINGS = 200_000  # the latest kept of each (a benchmark's drain)
_REJECT_CALLED_AE = bytes([wire.A_ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, 1, 1, 7])  # permanent, AE title


class Abort(Exception):
    """The peer broke the protocol: abort the association."""


class LeanStorageScp(StorageScp):
    """`StorageScp` served by the event loop (simulator option `dicom_lean`)."""

    _listener: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter]
    # Seconds, for benchmarks: from a data set's end to its answer (the delay and this SCP's
    # lateness), and from an answer to the next request on the association (the requestor's).
    answers: deque[float]
    turnarounds: deque[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers = deque(maxlen=TIMINGS)
        self.turnarounds = deque(maxlen=TIMINGS)
        self._writers = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (port 0: a free port, kept for the next start)."""
        self._loop = asyncio.get_running_loop()
        self._listener = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._listener.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Abort the associations and stop listening."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for writer in list(self._writers):
            with contextlib.suppress(OSError):
                writer.write(wire.abort(0))
            writer.transport.abort()

    async def closed(self) -> None:
        """After `stop`: until the associations' tasks have ended (a held C-STORE's too)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        try:
            await self._associate(reader, writer)
        except Abort:
            writer.write(wire.abort(wire.ABORT_UNEXPECTED_PDU))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _associate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, body = await _read_pdu(reader)
        if kind != wire.A_ASSOCIATE_RQ:
            raise Abort
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(bytes([kind, 0]) + len(body).to_bytes(4, "big") + body)
        request = pdu.to_primitive()
        if str(request.called_ae_title).strip() != self.ae_title:
            writer.write(_REJECT_CALLED_AE)
            await writer.drain()
            return
        contexts, results = _negotiate(request.presentation_context_definition_list)
        peer_max = 0
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                peer_max = int(item.maximum_length_received or 0)
        writer.write(
            association_accept(
                request,
                results,
                MAX_PDU,
                PYNETDICOM_IMPLEMENTATION_UID,
                PYNETDICOM_IMPLEMENTATION_VERSION,
            )
        )
        with self.lock:
            self.received.associations += 1
        self._notify()
        calling = str(request.calling_ae_title).strip()
        await self._run(reader, writer, contexts, peer_max, calling)

    async def _run(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        contexts: dict[int, str],
        peer_max: int,
        calling: str,
    ) -> None:
        command, data = bytearray(), bytearray()
        elements: dict[int, bytes] | None = None  # the command set, once complete
        loop, answered = asyncio.get_running_loop(), 0.0
        while True:
            kind, body = await _read_pdu(reader)
            if answered:
                self.turnarounds.append(loop.time() - answered)
                answered = 0.0
            if kind == wire.A_RELEASE_RQ:
                writer.write(wire.release_rp())
                await writer.drain()
                return
            if kind == wire.A_ABORT:
                return
            if kind != wire.P_DATA_TF:
                raise Abort
            pos = 0
            while pos < len(body):
                length, context_id, control = wire.pdv_header(body[pos : pos + 6])
                fragment = body[pos + 6 : pos + 6 + length]
                pos += 6 + length
                if context_id not in contexts:
                    raise Abort
                if control & 0x01:
                    command += fragment
                    if control & 0x02:
                        elements = wire.parse_command(bytes(command))
                        command.clear()
                        if wire.command_us(elements, wire.COMMAND_FIELD) == wire.C_ECHO_RQ:
                            answer = wire.encode_response(
                                wire.C_ECHO_RQ,
                                wire.command_us(elements, wire.MESSAGE_ID),
                                0x0000,
                                wire.command_uid(elements, wire.AFFECTED_SOP_CLASS),
                            )
                            writer.write(wire.p_data_command(context_id, answer, peer_max))
                            elements = None
                    continue
                if elements is None:
                    raise Abort
                data += fragment
                if control & 0x02:
                    started = loop.time()
                    answer = await self._store(elements, bytes(data), contexts[context_id], calling)
                    writer.write(wire.p_data_command(context_id, answer, peer_max))
                    answered = loop.time()
                    self.answers.append(answered - started)
                    data.clear()
                    elements = None

    async def _store(
        self, elements: dict[int, bytes], data: bytes, syntax: str, calling: str
    ) -> bytes:
        """One C-STORE's response command set, after the checks, faults and delay."""
        if wire.command_us(elements, wire.COMMAND_FIELD) != wire.C_STORE_RQ:
            raise Abort
        msg_id = wire.command_us(elements, wire.MESSAGE_ID)
        sop_class = wire.command_uid(elements, wire.AFFECTED_SOP_CLASS)
        sop = wire.command_uid(elements, wire.AFFECTED_SOP_INSTANCE)
        self.received.requests += 1
        if self.faults.hold:
            self.received.held += 1
            self._notify()
            await asyncio.to_thread(self.released.wait)
        if self.faults.dicom_delay > 0:
            await asyncio.sleep(self.faults.dicom_delay)
        tags = _routing(sop_class, sop, syntax, data)
        found = (tags["patient_id"], tags["accession_number"])
        status, why = self._verdict(tags["study_uid"], found)
        stored = status in (0x0000, 0x0001) or 0xB000 <= status <= 0xBFFF
        with self.lock:
            if stored:
                kept = data if self.faults.dicom_keep else b""
                self.received.instances[sop] = Stored(kept, syntax, calling)
            else:
                self.received.dicom_refused.append((sop, status, why))
        self._notify()
        if self.record is not None:
            body = {
                "SOPInstanceUID": sop,
                "SOPClassUID": tags["sop_class_uid"],
                "StudyInstanceUID": tags["study_uid"],
                "transfer_syntax": syntax,
                "calling_ae": calling,
            }
            verdict = "accepted" if stored else "refused"
            self.record("C-STORE", verdict, status, why, key=sop, body=body)
        return wire.encode_response(
            wire.C_STORE_RQ, msg_id, status, sop_class, sop, error_comment=why
        )


def _negotiate(
    proposed: list[PresentationContext],
) -> tuple[dict[int, str], list[PresentationContext]]:
    """Accepted {context ID: transfer syntax}, and every proposed context's result."""
    accepted: dict[int, str] = {}
    results = []
    for cx in proposed:
        result = PresentationContext()
        result.context_id = cx.context_id
        result.abstract_syntax = cx.abstract_syntax
        syntax = next((str(ts) for ts in cx.transfer_syntax if str(ts) in SYNTAXES), "")
        if str(cx.abstract_syntax) not in STORAGE:
            result.result = 0x03  # abstract syntax not supported
            result.transfer_syntax = [cx.transfer_syntax[0]]
        elif not syntax:
            result.result = 0x04  # transfer syntaxes not supported
            result.transfer_syntax = [cx.transfer_syntax[0]]
        else:
            result.result = 0x00
            result.transfer_syntax = [syntax]
            accepted[int(cx.context_id or 0)] = syntax
        results.append(result)
    return accepted, results


def _routing(sop_class: str, sop: str, syntax: str, data: bytes) -> dict[str, Any]:
    """The instance's study, PatientID, AccessionNumber and SOP class ("" when absent)."""
    meta = wire.file_meta(sop_class, sop, syntax, PYNETDICOM_IMPLEMENTATION_UID, "")
    stream = io.BytesIO(meta + data)
    found = routing_of(stream, len(meta) + len(data))
    if found is not None:
        return found
    stream.seek(0)  # not plain ASCII, or another syntax: pydicom reads it
    ds = dcmread(stream, stop_before_pixels=True, force=True)
    names = {"study_uid": "StudyInstanceUID", "patient_id": "PatientID"}
    names |= {"accession_number": "AccessionNumber", "sop_class_uid": "SOPClassUID"}
    return {key: str(ds.get(name, "") or "") for key, name in names.items()}


async def _read_pdu(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind, length = wire.pdu_header(await reader.readexactly(6))
    if length > MAX_PDU_IN:
        raise Abort
    return kind, await reader.readexactly(length)
