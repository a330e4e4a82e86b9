"""The local API: token-protected requests that become journaled events."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import structlog
from aiohttp import web
from pydantic import ValidationError

from agent.config import ApiSection
from agent.endpoints import RouteDef
from agent.events import Event, with_iso_times
from agent.inputs import Body
from agent.journal.alerts import alert_severity, alert_state, open_alerts, open_among
from agent.logs import peer_text
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.state import scope_states
from agent.web import openapi
from agent.web.apply_forms import Lookup, add_apply_form_routes
from agent.web.bodies import read_json_object
from agent.web.context import EMIT_KEY, QUERY_KEY, ROW_ID, Emit, Query, answer, refused
from agent.web.dashboard.sessions import SESSIONS_KEY, as_bytes, is_dashboard_route
from agent.web.deletions import add_deletion_routes
from agent.web.exam_files import add_exam_file_routes
from agent.web.exam_qr import add_exam_qr_routes
from agent.web.exams import add_exam_routes
from agent.web.guard import guard
from agent.web.lab import add_lab_routes
from agent.web.lookback import add_lookback_routes
from agent.web.metrics import Observe, add_observability_routes
from agent.web.models import (
    Acknowledgement,
    BulkAcknowledgement,
    Override,
    PatientForUse,
    Snooze,
)
from agent.web.quality import add_quality_routes
from agent.web.report_viewer import Build, add_report_viewer_route
from agent.web.sharing_queries import Queries, add_sharing_query_route
from agent.web.viewer_launch import Launch, add_viewer_launch_route

log = structlog.get_logger(__name__)
B = TypeVar("B", bound=Body)


def make_app(
    settings: ApiSection,
    emit: Emit,
    query: Query,
    *,
    photos_dir: Path | None = None,
    exam_files_dir: Path | None = None,
    qr_uplinks: Sequence[str] = (),
    qr_hint: str = "扫描查看数字影像",
    viewer_launch: Launch | None = None,
    apply_forms: Lookup | None = None,
    report_viewer: Build | None = None,
    observe: Observe | None = None,
    reprocessing: Sequence[ReprocessingConfig] = (),
    routes: Sequence[RouteDef] = (),
    sharing_queries: Queries | None = None,
) -> web.Application:
    """The API application; every route needs `Authorization: Bearer <token>` (see `open`), or
    the session cookie (and CSRF header) of the dashboard added by `add_dashboard_routes`."""
    assert settings.token is not None
    expected = settings.token.get_secret_value().encode()
    # Scrapers and load balancers expect /metrics and /healthz without credentials; they
    # change nothing and the API binds to loopback unless configured otherwise.
    open_paths = {"/metrics", "/healthz"} if settings.health_without_token else set()

    @web.middleware
    async def require_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        sessions = request.app.get(SESSIONS_KEY)  # set when the dashboard is served
        if sessions is not None and is_dashboard_route(request):
            return await handler(request)  # its pages and forms check the session themselves
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # Constant time: the comparison must not tell how much of a guess was right.
        if scheme == "Bearer" and hmac.compare_digest(as_bytes(given), expected):
            return await handler(request)
        # The dashboard's own API calls: no Authorization header, its session cookie and, for a
        # write, the session's CSRF token in X-CSRF-Token.
        if (
            sessions is not None
            and "Authorization" not in request.headers
            and sessions.allows_api(request)
        ):
            return await handler(request)
        log.warning("api.refused", path=peer_text(request.path), remote=request.remote)
        return answer({"error": "missing or wrong token"}, status=401)

    app = web.Application(middlewares=[guard, require_token], client_max_size=settings.max_body)
    app[EMIT_KEY] = emit
    app[QUERY_KEY] = query
    app.router.add_post("/api/v1/patients", set_patient)
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_post(f"/api/v1/alerts/{{alert_id:{ROW_ID}}}/acknowledge", acknowledge_alert)
    app.router.add_post(f"/api/v1/alerts/{{alert_id:{ROW_ID}}}/snooze", snooze_alert)
    app.router.add_post("/api/v1/alerts/acknowledge", acknowledge_alerts)
    app.router.add_get("/api/v1/scopes", list_scopes)
    app.router.add_post("/api/v1/scopes/{number}/override", override_scope)
    app.router.add_get(openapi.PATH, openapi.serve)
    add_exam_routes(app)
    if photos_dir is not None:
        add_quality_routes(app, photos_dir, settings.max_photo_bytes)
    if exam_files_dir is not None:
        add_exam_file_routes(app, exam_files_dir, settings.max_report_file_bytes)
    add_exam_qr_routes(app, qr_uplinks, qr_hint)
    add_lab_routes(app, exam_files_dir, settings.max_report_file_bytes)
    add_sharing_query_route(app, sharing_queries)
    add_deletion_routes(app)
    if viewer_launch is not None:
        add_viewer_launch_route(app, viewer_launch)
    add_apply_form_routes(app, apply_forms)
    if report_viewer is not None:
        add_report_viewer_route(app, report_viewer)
    if observe is not None:
        add_observability_routes(app, observe)
    add_lookback_routes(app, reprocessing)
    for route in routes:  # plugins' own routes (e.g. IDCAS links), behind the same token
        app.router.add_route(route.method, route.path, route.handler)
    return app


async def read_body(request: web.Request, model: type[B]) -> B:
    """The request's JSON body as `model`; Refused (4xx) when it is not one."""
    try:
        return model.model_validate(await read_json_object(request))
    except ValidationError as err:
        raise refused(err) from err


async def set_patient(request: web.Request) -> web.Response:
    """POST /api/v1/patients: journal who the next use at a reader is for; 201 once committed."""
    body = await read_body(request, PatientForUse)
    event = Event(
        "reprocessing.patient",
        "api",
        {
            "reader_id": body.reader_id,
            "patient_id": body.patient_id,
            "patient_name": body.patient_name,
        },
    )
    await request.app[EMIT_KEY](event)
    return answer({"event_id": event.id}, status=201)


async def list_alerts(request: web.Request) -> web.Response:
    """GET /api/v1/alerts: open alerts, newest first."""
    alerts = await request.app[QUERY_KEY](open_alerts)
    return answer({"alerts": [with_iso_times(alert, "at") for alert in alerts]})


async def acknowledge_alert(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/{id}/acknowledge: journal who acknowledged an open alert and why."""
    body = await read_body(request, Acknowledgement)
    alert_id = int(request.match_info["alert_id"])
    state = await request.app[QUERY_KEY](partial(alert_state, alert_id=alert_id))
    if state is None:
        return answer({"error": f"no alert {alert_id}"}, status=404)
    if state == "acknowledged":
        return answer({"error": f"alert {alert_id} is already acknowledged"}, status=409)
    event = Event("alert.acknowledge", "api", {"alert_id": alert_id, **body.model_dump()})
    await request.app[EMIT_KEY](event)
    log.info("alert.acknowledged", alert_id=alert_id)
    return answer({"event_id": event.id}, status=201)


async def acknowledge_alerts(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/acknowledge: journal who acknowledged several open alerts at once."""
    body = await read_body(request, BulkAcknowledgement)
    found = await request.app[QUERY_KEY](partial(open_among, alert_ids=body.ids))
    closed = sorted(set(body.ids) - set(found))
    if closed:
        return answer({"error": f"not open alerts: {closed}"}, status=409)
    fields = body.model_dump(exclude={"ids"})
    event = Event("alert.acknowledge", "api", {"alert_ids": found, **fields})
    await request.app[EMIT_KEY](event)
    log.info("alert.acknowledged", alerts=len(found), group=body.group)
    return answer({"event_id": event.id}, status=201)


async def snooze_alert(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/{id}/snooze: journal who snoozed the alert's condition, why, how long."""
    body = await read_body(request, Snooze)
    alert_id = int(request.match_info["alert_id"])
    severity = await request.app[QUERY_KEY](partial(alert_severity, alert_id=alert_id))
    if severity is None:
        return answer({"error": f"no alert {alert_id}"}, status=404)
    if severity == "critical":
        return answer({"error": "a critical alert is never snoozed: acknowledge it"}, status=409)
    event = Event("alert.snooze", "api", {"alert_id": alert_id, **body.model_dump()})
    await request.app[EMIT_KEY](event)
    log.warning("alert.snoozed", alert_id=alert_id, hours=body.hours)
    return answer({"event_id": event.id}, status=201)


async def list_scopes(request: web.Request) -> web.Response:
    """GET /api/v1/scopes: every scope's cycle, verdict and whether it is blocked."""
    return answer({"scopes": await request.app[QUERY_KEY](scope_states)})


async def override_scope(request: web.Request) -> web.Response:
    """POST /api/v1/scopes/{number}/override: release a blocked scope, by a named person."""
    body = await read_body(request, Override)
    number = request.match_info["number"]
    scopes = {s["number"]: s for s in await request.app[QUERY_KEY](scope_states)}
    if number not in scopes:
        return answer({"error": f"no scope {number} has been reprocessed"}, status=404)
    if not scopes[number]["blocked"]:
        return answer({"error": f"scope {number} is not blocked"}, status=409)
    event = Event("reprocessing.override", "api", {"scope": number, **body.model_dump()})
    await request.app[EMIT_KEY](event)
    log.warning("scope.override", scope=number)
    return answer({"event_id": event.id}, status=201)
