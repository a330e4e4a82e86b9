"""One kept association per study: a study's images stream on its own, studies in parallel."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from pydicom.dataset import Dataset

from agent.uplinks.remote_imaging.config import RemoteImagingConfig
from agent.uplinks.remote_imaging.dicom import Forwarding, StoreScu


class ScuPool:
    """`StoreScu`s by key (a study), at most `size` kept; `store` blocks (call it from threads),
    `store_on_loop` runs on the event loop."""

    def __init__(
        self, config: RemoteImagingConfig, host: str, size: int, forwarding: Forwarding
    ) -> None:
        self.config = config
        self.host = host
        self.size = size
        self.forwarding = forwarding
        self._lock = threading.Lock()
        self._scus: OrderedDict[str, StoreScu] = OrderedDict()  # least recently used first
        self._busy: dict[str, int] = {}
        self._retired = 0  # associations opened by StoreScus no longer in the pool

    @property
    def associations(self) -> int:
        """Associations opened so far (tests prove reuse with it)."""
        with self._lock:
            return self._retired + sum(scu.associations for scu in self._scus.values())

    @property
    def kept(self) -> bool:
        """Whether any association is being kept open for a next send."""
        with self._lock:
            return any(scu.kept for scu in self._scus.values())

    def kept_for(self, key: str) -> bool:
        """Whether `key` has an association kept open (it may still turn out unusable)."""
        with self._lock:
            scu = self._scus.get(key)
            return scu is not None and scu.kept

    def store(
        self, key: str, instance: tuple[str, str, str], source: Path | Dataset
    ) -> tuple[int | None, str]:
        """(status, error comment) of one C-STORE on `key`'s association (opened if need be)."""
        with self._lock:
            scu = self._scus.pop(key, None) or StoreScu(self.config, self.host, self.forwarding)
            self._scus[key] = scu
            self._busy[key] = self._busy.get(key, 0) + 1
            evicted = self._evict()
        for old in evicted:  # the least recently used idle studies: release theirs
            old.close()
        try:
            return scu.store(instance, source)
        finally:
            with self._lock:
                self._busy[key] -= 1
                if not self._busy[key]:
                    del self._busy[key]

    async def store_on_loop(
        self, key: str, instance: tuple[str, str, str], raw: bytes
    ) -> tuple[int | None, str] | None:
        """`store` on the event loop over `key`'s kept association; None when nothing was
        sent (none kept, or not usable from the loop): `store` it in a thread then."""
        with self._lock:  # held for dict operations only, never across a send
            scu = self._scus.get(key)
            if scu is None or not scu.kept:
                return None
            self._scus.move_to_end(key)
            self._busy[key] = self._busy.get(key, 0) + 1
        try:
            return await scu.store_on_loop(instance, raw)
        finally:
            with self._lock:
                self._busy[key] -= 1
                if not self._busy[key]:
                    del self._busy[key]

    def _evict(self) -> list[StoreScu]:
        evicted = []
        for key in list(self._scus):
            if len(self._scus) <= self.size:
                break
            if key not in self._busy:
                scu = self._scus.pop(key)
                self._retired += scu.associations
                evicted.append(scu)
        return evicted

    def close_if_idle(self) -> bool:
        """Release every association unused for `association_idle`; True if any was."""
        with self._lock:
            idle = [k for k in self._scus if k not in self._busy]
            scus = [self._scus[k] for k in idle]
        closed = [scu.close_if_idle() for scu in scus]  # each of them, not up to the first
        return any(closed)

    def close(self) -> None:
        """Release every association."""
        with self._lock:
            scus = list(self._scus.values())
        for scu in scus:
            scu.close()
