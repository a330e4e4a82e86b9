"""Local API for the lab domain and result sharing (LIS, HIS doctor stations): each record
validated, journaled, then 201; lab PDFs stored durably first; the item catalogue as CSV."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from agent.events import Event
from agent.lab.documents import (
    LabDevice,
    LabReport,
    QcRun,
    Recognition,
    Viewing,
    read_catalogue,
)
from agent.lab.handler import CATALOGUE, DEVICE, FILES, QC, RECOGNITION, REPORT, VIEWING
from agent.web.bodies import Refused, only_query, read_form, read_json_object, read_raw_file
from agent.web.context import EMIT_KEY, answer, refused
from agent.web.exam_files import EXAM_NO
from agent.web.files import FileStore, file_type

log = structlog.get_logger(__name__)
CSV_TYPES = frozenset({"text/csv", "text/plain"})
# Route -> (the body's model, the event kind it journals).
RECORD_ROUTES: dict[str, tuple[type[BaseModel], str]] = {
    "/api/v1/lab/reports": (LabReport, REPORT),
    "/api/v1/lab/devices": (LabDevice, DEVICE),
    "/api/v1/lab/qc": (QcRun, QC),
    "/api/v1/sharing/recognitions": (Recognition, RECOGNITION),
    "/api/v1/sharing/viewings": (Viewing, VIEWING),
}


def add_lab_routes(app: web.Application, files_dir: Path | None, max_file_bytes: int) -> None:
    """Register the lab and sharing routes (the app's token middleware protects them)."""
    for path, (model, kind) in RECORD_ROUTES.items():
        app.router.add_post(path, _poster(model, kind))
    app.router.add_post("/api/v1/lab/catalogue", post_catalogue)
    if files_dir is not None:
        store = FileStore(files_dir, max_file_bytes)
        app.router.add_post("/api/v1/lab/reports/{report_no}/files", partial(attach, store))


def _poster(model: type[BaseModel], kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def post(request: web.Request) -> web.Response:
        only_query(request)
        try:
            body = model.model_validate(await read_json_object(request))
        except ValidationError as err:
            raise refused(err) from err
        event = Event(kind, "api", body.model_dump(exclude_none=True))
        await request.app[EMIT_KEY](event)
        log.info("lab.recorded", kind=kind)
        return answer({"event_id": event.id}, status=201)

    post.__doc__ = f"POST a {model.__name__}: validated, journaled ({kind}), 201."
    return post


async def post_catalogue(request: web.Request) -> web.Response:
    """POST the item catalogue as CSV (domain, local_code, local_name, platform_code,
    platform_name): it replaces the catalogue; 422 lists every bad line."""
    only_query(request)
    if request.content_type not in CSV_TYPES:
        raise Refused(415, ["body: send text/csv"])
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError as err:
        raise Refused(400, ["body: not UTF-8 text"]) from err
    items, problems = read_catalogue(text)
    if problems:
        raise Refused(422, problems)
    event = Event(CATALOGUE, "api", {"items": items})
    await request.app[EMIT_KEY](event)
    log.info("lab.catalogue_imported", items=len(items))
    return answer({"event_id": event.id, "items": len(items)}, status=201)


async def attach(store: FileStore, request: web.Request) -> web.Response:
    """POST a lab report's PDF (multipart parts `file`, or the raw application/pdf body):
    stored durably, journaled, 201; it is uploaded after the report once audited."""
    number = request.match_info["report_no"]
    if not EXAM_NO.fullmatch(number) or number.strip() != number:
        raise Refused(400, ["report_no: 1-32 characters, no control characters or outer spaces"])
    only_query(request)
    if request.content_type == "application/pdf":
        files = [await read_raw_file(request, store.max_bytes)]
        found: list[str] = []
    else:
        posted = await read_form(request, {"file": store.max_bytes})
        files, found = posted.files.get("file", []), list(posted.problems)
    if not files:
        found.append("file: at least one file required")
    found += [f"file {n}: not a PDF" for n, d in enumerate(files, 1) if file_type(d) != "pdf"]
    if found:
        raise Refused(422, found)
    try:
        names = [await store.save(data) for data in files]
    except OSError as err:
        log.error("lab.file_not_stored", error=err.strerror or type(err).__name__)
        return answer({"error": "the file could not be stored"}, status=507)
    stored = [{"name": n, "size": len(d)} for n, d in zip(names, files, strict=True)]
    event = Event(FILES, "api", {"report_no": number, "files": stored})
    await request.app[EMIT_KEY](event)
    log.info("lab.files_attached", files=len(stored))
    return answer({"event_id": event.id, "files": stored}, status=201)
