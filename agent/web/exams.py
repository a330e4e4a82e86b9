"""Local API for imaging: RIS/PACS post exams (journaled, then 201); studies and deliveries."""

from __future__ import annotations

from functools import partial

import structlog
from aiohttp import web
from pydantic import ValidationError

from agent.events import Event
from agent.imaging.exam_document import Exam, exam_payload
from agent.imaging.exams import exam_by_number
from agent.imaging.handler import EXAM
from agent.imaging.state import recent_studies, study_detail
from agent.web.bodies import only_query, query_int, read_json_object
from agent.web.context import EMIT_KEY, QUERY_KEY, answer, refused

log = structlog.get_logger(__name__)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def add_exam_routes(app: web.Application) -> None:
    """Register the exam and study routes (the app's token middleware protects them)."""
    app.router.add_post("/api/v1/exams", post_exam)
    app.router.add_get("/api/v1/exams/{exam_no}", get_exam)
    app.router.add_get("/api/v1/studies", list_studies)
    app.router.add_get("/api/v1/studies/{study_uid}", get_study)


async def post_exam(request: web.Request) -> web.Response:
    """POST /api/v1/exams: validate the exam document, journal it, 201 {"event_id"}."""
    try:
        exam = Exam.model_validate(await read_json_object(request))
    except ValidationError as err:
        raise refused(err) from err
    event = Event(EXAM, "api", exam_payload(exam))
    await request.app[EMIT_KEY](event)
    log.info("imaging.exam_recorded", status=exam.examInfo.examStatus)
    return answer({"event_id": event.id}, status=201)


async def get_exam(request: web.Request) -> web.Response:
    """GET /api/v1/exams/{exam_no}: the exam's neutral record (with its files); 404."""
    number = request.match_info["exam_no"]
    record = await request.app[QUERY_KEY](partial(exam_by_number, number=number))
    if record is None or record["exam_no"] != number:
        return answer({"error": "no such exam"}, status=404)
    return answer({"exam": record})


async def list_studies(request: web.Request) -> web.Response:
    """GET /api/v1/studies?limit=N: the studies received last, with exams and deliveries."""
    only_query(request, "limit")
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    studies = await request.app[QUERY_KEY](partial(recent_studies, limit=limit))
    return answer({"studies": studies})


async def get_study(request: web.Request) -> web.Response:
    """GET /api/v1/studies/{study_uid}: one study, its series, exams and deliveries; 404."""
    uid = request.match_info["study_uid"]
    study = await request.app[QUERY_KEY](partial(study_detail, study_uid=uid))
    if study is None:
        return answer({"error": "no such study"}, status=404)
    return answer({"study": study})
