"""Lookback on the local API: GET /api/v1/lookback (JSON or CSV), audited before it is answered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from agent.events import Event
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.lookback import (
    AUDIT_EVENT,
    LookbackError,
    Question,
    answer,
    audit_payload,
    masked,
    question_from,
)
from agent.reprocessing.lookback_export import flat_rows, to_csv
from agent.web.bodies import Refused, only_query
from agent.web.context import EMIT_KEY, QUERY_KEY, Emit, Query
from agent.web.context import answer as json_answer

log = structlog.get_logger(__name__)
FIELDS = ("kind", "subject", "since", "until", "cycle", "by", "format", "full")
CHOICES = {"format": ("json", "csv"), "full": ("true", "false", "1", "0")}
LOOKBACK_CONFIGS: web.AppKey[tuple[ReprocessingConfig, ...]] = web.AppKey("lookback_configs")


def add_lookback_routes(app: web.Application, configs: Sequence[ReprocessingConfig]) -> None:
    """Register GET /api/v1/lookback (the app's token middleware protects it)."""
    app[LOOKBACK_CONFIGS] = tuple(configs)
    app.router.add_get("/api/v1/lookback", get_lookback)


def ask(fields: Mapping[str, str], configs: Sequence[ReprocessingConfig]) -> tuple[Question, str]:
    """The question and who asks it; Refused(422) naming every problem."""
    problems = []
    try:
        question = question_from(fields, configs)
    except LookbackError as err:
        problems = str(err).split("; ")
    by = fields.get("by", "").strip()
    if not by:
        problems.append("by: who runs the lookback (kept in the audit trail)")
    if problems:
        raise Refused(422, problems)
    return question, by


async def run(
    emit: Emit, query: Query, question: Question, *, by: str, via: str, full: bool
) -> list[dict[str, Any]]:
    """Journal who asks (before anything is shown), then answer; Refused(422) if unanswerable."""
    await emit(Event(AUDIT_EVENT, via, audit_payload(question, by=by, via=via, full=full)))
    log.info("lookback.run", kind=question.kind, via=via, full=full)
    try:
        entries: list[dict[str, Any]] = await query(partial(answer, question=question))
    except LookbackError as err:
        raise Refused(422, [str(err)]) from err
    return entries


async def get_lookback(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/lookback?kind=&subject=&since=&until=&cycle=&by=[&format=csv][&full=true]:
    the entries (patient masked unless full=true), or the CSV export."""
    only_query(request, *FIELDS)
    for name, allowed in CHOICES.items():  # each once, and one of its values
        given = request.query.getall(name, [])
        if len(given) > 1 or (given and given[0] not in allowed):
            raise Refused(400, [f"{name}: once, one of {', '.join(allowed)}"])
    configs = request.app[LOOKBACK_CONFIGS]
    question, by = ask(request.query, configs)
    full = request.query.get("full", "") in ("1", "true")
    entries = await run(
        request.app[EMIT_KEY], request.app[QUERY_KEY], question, by=by, via="api", full=full
    )
    if request.query.get("format") == "csv":
        zone = ZoneInfo(configs[0].timezone) if configs else None
        return csv_response(to_csv(flat_rows(entries, zone, full=full)), question)
    return json_answer(
        {"question": question.audit_detail(), "entries": entries if full else masked(entries)}
    )


def csv_response(text: str, question: Question) -> web.Response:
    """The export as a download named after the question's kind."""
    return web.Response(
        body=text.encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="lookback-{question.kind}.csv"'},
    )
