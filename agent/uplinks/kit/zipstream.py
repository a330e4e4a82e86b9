"""A study's files as one ZIP, streamed as it is written: stored (DICOM is often compressed
already), ZIP64 so a study may pass 4 GiB, never whole in memory."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

CHUNK = 1 << 20
AHEAD = 8  # chunks written ahead of the client at most


class _Pipe(io.RawIOBase):
    """What zipfile writes to: each write handed to the event loop (it is not seekable)."""

    def __init__(self, put: Callable[[bytes], None]) -> None:
        self._put = put

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._put(bytes(data))
        return len(data)


async def send_zip(
    request: web.Request, files: Sequence[tuple[str, Path]], filename: str
) -> web.StreamResponse:
    """Answer `files` (name in the archive, path) as `filename`, written while it is sent."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=AHEAD)
    gone = threading.Event()

    def put(item: bytes | None) -> None:  # in the writing thread
        if gone.is_set():
            raise OSError("the client went away")
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def write() -> None:
        try:
            with zipfile.ZipFile(_Pipe(put), "w", zipfile.ZIP_STORED) as archive:
                for name, path in files:
                    entry = archive.open(name, "w", force_zip64=True)
                    with path.open("rb") as source, entry as out:
                        shutil.copyfileobj(source, out, CHUNK)
        finally:
            if not gone.is_set():
                put(None)

    writer = asyncio.ensure_future(asyncio.to_thread(write))
    try:
        while (chunk := await queue.get()) is not None:
            await response.write(chunk)
    except BaseException:
        gone.set()
        while not queue.empty():  # a writer waiting on a full queue goes on, and stops
            queue.get_nowait()
        with contextlib.suppress(BaseException):
            await writer
        raise
    await writer
    await response.write_eof()
    return response
