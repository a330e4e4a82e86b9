"""Local API for PACS: images a doctor deleted (seed 004 §4.5), journaled; the imaging domain
takes them out of the index and notifies the platforms that ask."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

import structlog
from aiohttp import web
from pydantic import Field, ValidationError, field_validator

from agent.events import Event
from agent.imaging.deletions import studies_of_accession
from agent.imaging.handler import DELETION
from agent.inputs import Body, year_problem
from agent.web.bodies import read_json_object
from agent.web.context import EMIT_KEY, QUERY_KEY, answer, refused

log = structlog.get_logger(__name__)
Uid = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]


class Deletion(Body):
    """Who deleted what, when: series or instances of the accession, or (neither) all of it."""

    by: Annotated[str, Field(min_length=1, max_length=64)]  # the doctor (operateDoctorName)
    at: str | None = None  # local date-time (ISO 8601 or YYYY-MM-DD HH:MM:SS); default: now
    series_uids: Annotated[list[Uid], Field(max_length=1000)] = []
    sop_uids: Annotated[list[Uid], Field(max_length=10_000)] = []
    reason: Annotated[str, Field(max_length=256)] | None = None

    @field_validator("at")
    @classmethod
    def _local_time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
        if moment.tzinfo is not None:
            raise ValueError("a local date-time, without a zone")
        if problem := year_problem(moment):
            raise ValueError(problem)
        return moment.replace(microsecond=0).isoformat()


def add_deletion_routes(app: web.Application) -> None:
    """Register the deletion route (the app's token middleware protects it)."""
    app.router.add_post("/api/v1/exams/{accession}/deletions", post_deletion)


async def post_deletion(request: web.Request) -> web.Response:
    """POST: 201 {"event_id"} once journaled; 404 when no study has this accession number."""
    accession = request.match_info["accession"]
    try:
        body = Deletion.model_validate(await read_json_object(request))
    except ValidationError as err:
        raise refused(err) from err
    studies = await request.app[QUERY_KEY](partial(studies_of_accession, accession=accession))
    if not studies:
        return answer({"error": "no study with this accession number"}, status=404)
    payload = {"accession": accession, **body.model_dump(exclude_none=True), "source": "api"}
    event = Event(DELETION, "api", payload)
    await request.app[EMIT_KEY](event)
    log.info(
        "imaging.deletion_recorded", series=len(body.series_uids), instances=len(body.sop_uids)
    )
    return answer({"event_id": event.id}, status=201)
