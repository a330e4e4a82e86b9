"""Content-addressed files stored durably (`<sha256>.<ext>`): quality photos, report attachments."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from agent.web.context import answer

MAGIC = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png", b"%PDF-": "pdf"}
CONTENT_TYPES = {
    "jpg": "image/jpeg", "png": "image/png", "pdf": "application/pdf", "bmp": "image/bmp"
}  # fmt: skip
NAME = re.compile(r"[0-9a-f]{64}\.(?:jpg|png|pdf|bmp)")
# A BMP starts "BM" and, at byte 14, the size of one of the DIB headers Windows defines: two
# letters alone would take many a text file for an image.
BMP_HEADERS = frozenset({12, 40, 52, 56, 64, 108, 124})


def file_type(data: bytes) -> str | None:
    """The extension (jpg, png, pdf, bmp) the magic bytes call for; None for anything else."""
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in BMP_HEADERS:
        return "bmp"
    return next((ext for magic, ext in MAGIC.items() if data.startswith(magic)), None)


@dataclass(frozen=True, slots=True)
class FileStore:
    """Content-addressed files of the given types in `directory`, each at most `max_bytes`."""

    directory: Path
    max_bytes: int

    async def save(self, data: bytes) -> str:
        """Write the file durably (fsynced, renamed, directory fsynced); return its name."""
        name = f"{hashlib.sha256(data).hexdigest()}.{file_type(data)}"
        await asyncio.to_thread(_write_durably, self.directory, name, data)
        return name

    async def serve(self, name: str, missing: str) -> web.StreamResponse:
        """The stored file by its name; anything else (`missing` says what) is 404."""
        path = self.directory / name
        # The name is checked before it touches the file system: no traversal, no other file.
        if not NAME.fullmatch(name) or not await asyncio.to_thread(path.is_file):
            return answer({"error": f"no such {missing}"}, status=404)
        return web.FileResponse(
            path,
            headers={
                "Content-Type": CONTENT_TYPES[name.rsplit(".", 1)[1]],
                "Cache-Control": "private, max-age=31536000, immutable",  # the name is the content
                "X-Content-Type-Options": "nosniff",
            },
        )


def _write_durably(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    try:  # content-addressed, and only complete files are ever renamed into place
        os.utime(target)  # fresh again: the journal's retention leaves a file touched lately
        return
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # the rename is durable only once the directory is synced
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
