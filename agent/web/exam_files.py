"""Local API for an exam's report files (PDF, report images): stored durably, then journaled."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.events import Event
from agent.imaging.exams import exam_files
from agent.imaging.handler import EXAM_FILE
from agent.web.bodies import Refused, only_query, read_form, read_raw_file
from agent.web.context import EMIT_KEY, QUERY_KEY, answer
from agent.web.files import FileStore, file_type

log = structlog.get_logger(__name__)

KINDS = {"report_pdf": ("pdf",), "report_image": ("jpg", "png", "bmp")}
DEFAULT_KIND = {"pdf": "report_pdf", "jpg": "report_image", "png": "report_image",
                "bmp": "report_image"}  # fmt: skip
RAW_TYPES = {"application/pdf", "image/jpeg", "image/png", "image/bmp"}
EXAM_NO = re.compile(r"[^\x00-\x1f\x7f]{1,32}")  # the exam document's examNo: VC(32), required


def add_exam_file_routes(app: web.Application, directory: Path, max_bytes: int) -> None:
    """Register the report-file routes (the app's token middleware protects them)."""
    store = FileStore(directory, max_bytes)
    app.router.add_post("/api/v1/exams/{exam_no}/files", partial(attach, store))
    app.router.add_get("/api/v1/exams/{exam_no}/files", list_files)
    app.router.add_get("/api/v1/exams/{exam_no}/files/{name}", partial(serve_file, store))


def _exam_no(request: web.Request) -> str:
    exam_no = request.match_info["exam_no"]
    if not EXAM_NO.fullmatch(exam_no) or exam_no.strip() != exam_no:
        raise Refused(400, ["exam_no: 1-32 characters, no control characters or outer spaces"])
    return exam_no


async def attach(store: FileStore, request: web.Request) -> web.Response:
    """POST a report PDF or image (multipart parts `file`, optional field `kind`, or the raw
    file as application/pdf, image/jpeg, image/png or image/bmp): store it durably, journal it,
    201."""
    exam_no = _exam_no(request)
    only_query(request, "kind")
    if request.content_type in RAW_TYPES:
        files, kind, found = (
            [await read_raw_file(request, store.max_bytes)],
            request.query.get("kind", ""),
            [],
        )
    else:
        posted = await read_form(request, {"file": store.max_bytes})
        files, kind, found = (
            posted.files.get("file", []),
            posted.fields.get("kind", ""),
            posted.problems,
        )
    found += _problems(kind, files)
    if found:
        raise Refused(422, found)
    try:
        names = [await store.save(data) for data in files]
    except OSError as err:
        log.error("imaging.file_not_stored", error=err.strerror or type(err).__name__)
        return answer({"error": "the file could not be stored"}, status=507)
    stored: list[dict[str, Any]] = [
        {"name": name, "kind": kind or DEFAULT_KIND[name.rsplit(".", 1)[1]], "size": len(data)}
        for name, data in zip(names, files, strict=True)
    ]
    # The domain is told where each file is (uplinks send report images from there).
    journaled = [{**f, "path": str(store.directory / f["name"])} for f in stored]
    event = Event(EXAM_FILE, "api", {"exam_no": exam_no, "files": journaled})
    await request.app[EMIT_KEY](event)
    log.info("imaging.files_attached", files=len(stored))
    return answer({"event_id": event.id, "files": stored}, status=201)


def _problems(kind: str, files: list[bytes]) -> list[str]:
    found = [] if files else ["file: at least one file required"]
    if kind and kind not in KINDS:
        found.append(f"kind: one of {', '.join(KINDS)}")
    for n, data in enumerate(files, start=1):
        ext = file_type(data)
        if ext is None:
            found.append(f"file {n}: not a PDF, JPEG, PNG or BMP file")
        elif kind in KINDS and ext not in KINDS[kind]:
            found.append(f"file {n}: a {ext} file cannot be a {kind}")
    return found


async def list_files(request: web.Request) -> web.Response:
    """GET the files attached to an exam (an exam not known yet may have files already)."""
    exam_no = _exam_no(request)
    only_query(request)
    files = await request.app[QUERY_KEY](partial(exam_files, exam_no=exam_no))
    return answer({"exam_no": exam_no, "files": files})


async def serve_file(store: FileStore, request: web.Request) -> web.StreamResponse:
    """GET one attached file by its name (`<64 hex>.pdf|jpg|png|bmp`); anything else is 404."""
    exam_no = _exam_no(request)
    only_query(request)
    name = request.match_info["name"]
    files = await request.app[QUERY_KEY](partial(exam_files, exam_no=exam_no))
    if not any(f["name"] == name for f in files):
        return answer({"error": "no such file for this exam"}, status=404)
    return await store.serve(name, "file")
