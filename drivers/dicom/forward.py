"""Lean C-STORE forwarding: `store_link`'s plain-socket association, opened by an uplink.

An uplink never imports a driver: the wiring hands it `FORWARDING` (agent.plugins), which
it uses through its own protocol (agent/uplinks/remote_imaging/dicom.py). Per image this costs
one header read without pydicom (`tags.read_routing`), one command set, the data set streamed
from the spool file as stored, and one response read, all in the calling thread: no
pynetdicom threads, no reactor to pause, nothing re-encoded when the stored syntax was accepted.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import encode
from pynetdicom.presentation import PresentationContext

from drivers.dicom import wire
from drivers.dicom.retrieve import MAX_FRAGMENT, NotSent, StoredInstance, fragments, payload_for
from drivers.dicom.store_link import LinkError, LinkSettings, StoreLink
from drivers.dicom.tags import UnreadableDataset, read_routing, routing_of

ON_LOOP_MAX = 262_144  # larger spool files are streamed by a thread, not read whole on the loop
_META_START = b"DICM\x02\x00\x00\x00UL\x04\x00"  # (0002,0000) UL 4, as the spool writes it


class NoContext(LookupError):
    """The peer accepted no presentation context this instance can be sent in."""


class ForwardLink:
    """One storage association kept for a sender's images (one thread at a time)."""

    def __init__(self, link: StoreLink) -> None:
        self._link = link
        self._exact = {  # (SOP class, transfer syntax) -> its accepted context
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): int(cx.context_id or 0)
            for cx in reversed(link.accepted)
        }

    def store(
        self, instance: tuple[str, str, str], source: Path | Dataset, msg_id: int
    ) -> tuple[int, str]:
        """C-STORE `source` (a spool file as stored, or a data set) of `instance` (SOP class,
        SOP instance, transfer syntax); the response's Status and ErrorComment. NoContext:
        nothing accepted fits; OSError: the association broke (it is closed) or the file is
        unreadable (nothing was sent)."""
        sop_class, sop_instance, syntax = instance
        payload: Path | bytes
        if isinstance(source, Dataset):
            context_id, payload = self._encoded(sop_class, source)
        elif (context_id := self._exact.get((sop_class, syntax), 0)) != 0:
            payload = source  # the stored syntax was accepted: the file's bytes as they are
        elif UID(syntax).is_compressed:  # decoded only when asked to (the uplink's decompress)
            raise NoContext(f"the platform accepted no context for {sop_class} in {syntax}")
        else:  # another uncompressed syntax: converted, as for a C-MOVE peer
            stored = StoredInstance(source, sop_class, sop_instance, syntax)
            try:
                context, payload = payload_for(self._link.accepted, stored)  # a conversion
            except NotSent as err:
                raise NoContext(str(err)) from err
            context_id = int(context.context_id or 0)
        command = wire.encode_store_request(msg_id, sop_class, sop_instance)
        try:
            return self._link.store(context_id, command, payload, msg_id)
        except NotSent as err:  # the file could not be read: nothing went out
            raise OSError(str(err)) from err

    async def store_on_loop(
        self, instance: tuple[str, str, str], raw: bytes, msg_id: int
    ) -> tuple[int, str] | None:
        """`store` of a small spool file (`raw`: its bytes, from `Forwarding.small`) whose
        stored syntax was accepted, from the event loop without a thread; None (nothing sent)
        when it is not such a file: `store` it then. OSError: the association broke (closed)."""
        sop_class, sop_instance, syntax = instance
        context_id = self._exact.get((sop_class, syntax), 0)
        if context_id == 0 or len(raw) < 144 or raw[128:140] != _META_START:
            return None
        data = memoryview(raw)[144 + int.from_bytes(raw[140:144], "little") :]
        peer_max = self._link.peer_max
        room = min(peer_max - 6, MAX_FRAGMENT) if peer_max > 6 else MAX_FRAGMENT
        command = wire.encode_store_request(msg_id, sop_class, sop_instance)
        parts: list[bytes | memoryview] = [wire.p_data_command(context_id, command, peer_max)]
        parts += fragments(context_id, room, data, True)
        return await self._link.store_on_loop(parts, msg_id)

    def _encoded(self, sop_class: str, ds: Dataset) -> tuple[int, bytes]:
        syntax = UID(ds.file_meta.TransferSyntaxUID)
        mine = [cx for cx in self._link.accepted if cx.abstract_syntax == sop_class]
        # Its own syntax first, then any uncompressed one pydicom encodes it in.
        for cx in sorted(mine, key=lambda cx: cx.transfer_syntax[0] != syntax):
            target = UID(cx.transfer_syntax[0])
            if target == syntax or (not target.is_compressed and not syntax.is_compressed):
                data = encode(
                    ds, target.is_implicit_VR, target.is_little_endian, target.is_deflated
                )
                if data is not None:
                    return int(cx.context_id or 0), data
        raise NoContext(f"no accepted context for {sop_class} in {syntax.name} or uncompressed")

    @property
    def is_open(self) -> bool:
        """Whether the association is still there (it is closed when it broke)."""
        return self._link.is_established

    def release(self) -> None:
        """Release the association (an abort if the peer does not answer)."""
        self._link.release()

    def abort(self) -> None:
        """Abort the association and close it."""
        sock = self._link.sock
        if sock is not None:
            try:
                sock.sendall(wire.abort(0))
            except OSError:
                pass
        self._link.close()


class Forwarding:
    """What an uplink forwards images with: header reads and storage associations."""

    def header(self, path: Path) -> dict[str, Any]:
        """Transfer syntax and identifying tags of a spool file (ValueError when unreadable)."""
        try:
            return read_routing(path)
        except UnreadableDataset as err:
            if isinstance(err.__cause__, OSError):
                raise err.__cause__ from err
            raise ValueError(err.reason) from err

    def small(self, path: Path) -> tuple[dict[str, Any], bytes] | None:
        """`header` and the bytes of a spool file read once, when it is small enough to be
        sent from the event loop (None otherwise); errors as `header`."""
        with path.open("rb") as file:  # small and local, most likely in the page cache
            raw = file.read(ON_LOOP_MAX + 1)
        if len(raw) > ON_LOOP_MAX:
            return None
        found = routing_of(io.BytesIO(raw), len(raw))
        return (self.header(path) if found is None else found), raw

    def associate(
        self,
        address: tuple[str, int],
        called_ae: str,
        calling_ae: str,
        pairs: list[tuple[str, str]],
        *,
        timeouts: tuple[float, float, float],
        max_pdu: int,
    ) -> ForwardLink:
        """A storage association proposing each (SOP class, transfer syntax) pair as a context
        of its own (`timeouts`: connect, ACSE, DIMSE); LinkError (an OSError) with the reason."""
        contexts = []
        for sop_class, syntax in pairs:
            context = PresentationContext()
            context.abstract_syntax = UID(sop_class)
            context.transfer_syntax = [UID(syntax)]
            contexts.append(context)
        connect, acse, dimse = timeouts
        settings = LinkSettings(
            calling_ae=calling_ae,
            max_pdu=max_pdu,
            implementation_uid=PYNETDICOM_IMPLEMENTATION_UID,
            implementation_version=PYNETDICOM_IMPLEMENTATION_VERSION,
            acse_timeout=acse,
            dimse_timeout=dimse,
            connect_timeout=connect,
        )
        return ForwardLink(StoreLink.open(address, called_ae, contexts, settings))


FORWARDING = Forwarding()
__all__ = ["FORWARDING", "ForwardLink", "Forwarding", "LinkError", "NoContext"]
