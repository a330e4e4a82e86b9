"""Dashboard actions: forms that journal what the local API journals, behind session + CSRF."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated

import structlog
from aiohttp import web
from pydantic import ConfigDict, Field, ValidationError

from agent.events import Event
from agent.inputs import Body
from agent.journal import queries
from agent.journal.alerts import alert_severity, alert_state, open_among
from agent.logs import peer_text
from agent.reprocessing.state import scope_states
from agent.web.bodies import Form, read_form
from agent.web.context import EMIT_KEY, problems
from agent.web.dashboard.context import DASHBOARD_KEY, Viewer
from agent.web.dashboard.pages import PAGES, layout, notice
from agent.web.dashboard.render import Markup
from agent.web.dashboard.sessions import CSRF_FIELD, Session, csrf_matches
from agent.web.dashboard.views.uplinks import message_detail
from agent.web.models import Acknowledgement, BulkAcknowledgement, Override, Snooze

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OutboxAction(Body):
    """Who re-queues or discards a message, and (for a discard) why."""

    model_config = ConfigDict(str_strip_whitespace=True)
    multiline = frozenset({"reason"})

    by: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=3, max_length=500)] | None = None


def fields(form: Form, *names: str) -> dict[str, str]:
    """The named text fields of a form, stripped; absent ones are left out."""
    return {n: v.strip() for n in names if (v := form.fields.get(n)) is not None}


async def refusal(request: web.Request, status: int, found: list[str], page: str) -> web.Response:
    """The page the action came from, with what stopped it, answered with `status`."""
    dashboard = request.app[DASHBOARD_KEY]
    viewer = Viewer(dashboard.sessions.of(request))
    target = PAGES[page]
    body = layout(
        name=target.name,
        chinese=target.chinese,
        english=target.english,
        viewer=viewer,
        live=await target.live(dashboard, viewer),
        here=target.path,
        live_name=target.name,
        zone=dashboard.zone,
        notice=notice(None, found),
    )
    return web.Response(text=body, content_type="text/html", status=status)


def log_refused(request: web.Request, why: str) -> None:
    """One warning for an action refused for want of a session or its CSRF token."""
    log.warning("dashboard.refused", path=peer_text(request.path), remote=request.remote, why=why)


async def guarded(
    request: web.Request,
) -> tuple[Session, Form]:
    """The session and form of an action; 303 to /login without a session, 403 without CSRF."""
    session = request.app[DASHBOARD_KEY].sessions.of(request)
    if session is None:
        log.warning(
            "dashboard.refused", path=peer_text(request.path), remote=request.remote, why="session"
        )
        raise web.HTTPSeeOther("/login")
    form = await read_form(request)
    if not csrf_matches(session, form.fields.get(CSRF_FIELD, "")):
        log.warning(
            "dashboard.refused", path=peer_text(request.path), remote=request.remote, why="csrf"
        )
        raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page")
    return session, form


async def acknowledge(request: web.Request) -> web.Response:
    """POST /alerts/{id}/acknowledge: as POST /api/v1/alerts/{id}/acknowledge does."""
    _, form = await guarded(request)
    try:
        body = Acknowledgement.model_validate(fields(form, "by", "note", "group"))
    except ValidationError as err:
        return await refusal(request, 422, problems(err), "alerts")
    alert_id = int(request.match_info["alert_id"])
    state = await request.app[DASHBOARD_KEY].query(partial(alert_state, alert_id=alert_id))
    if state is None:
        return await refusal(request, 404, [f"no alert {alert_id}"], "alerts")
    if state == "acknowledged":
        return await refusal(request, 409, [f"alert {alert_id} is already acknowledged"], "alerts")
    event = Event("alert.acknowledge", "dashboard", {"alert_id": alert_id, **body.model_dump()})
    await request.app[EMIT_KEY](event)
    log.info("alert.acknowledged", alert_id=alert_id, group=body.group)
    raise web.HTTPSeeOther("/alerts?done=acknowledged")


async def acknowledge_selected(request: web.Request) -> web.Response:
    """POST /alerts/acknowledge: the cards ticked (`alert-<id>`), each with its repeats."""
    _, form = await guarded(request)
    ids = [name.removeprefix("alert-") for name in form.fields if name.startswith("alert-")]
    try:
        body = BulkAcknowledgement.model_validate(
            {**fields(form, "by", "note"), "ids": ids, "group": True}
        )
    except ValidationError as err:
        return await refusal(request, 422, problems(err), "alerts")
    found = await request.app[DASHBOARD_KEY].query(partial(open_among, alert_ids=body.ids))
    if not found:
        return await refusal(request, 409, ["none of them is open any more"], "alerts")
    payload = {"alert_ids": found, **body.model_dump(exclude={"ids"})}
    await request.app[EMIT_KEY](Event("alert.acknowledge", "dashboard", payload))
    log.info("alert.acknowledged", alerts=len(found), group=True)
    raise web.HTTPSeeOther("/alerts?done=acknowledged")


async def snooze(request: web.Request) -> web.Response:
    """POST /alerts/{id}/snooze: as POST /api/v1/alerts/{id}/snooze does."""
    _, form = await guarded(request)
    try:
        body = Snooze.model_validate(fields(form, "by", "reason", "hours"))
    except ValidationError as err:
        return await refusal(request, 422, problems(err), "alerts")
    alert_id = int(request.match_info["alert_id"])
    severity = await request.app[DASHBOARD_KEY].query(partial(alert_severity, alert_id=alert_id))
    if severity is None:
        return await refusal(request, 404, [f"no alert {alert_id}"], "alerts")
    if severity == "critical":
        return await refusal(request, 409, ["a critical alert is never snoozed"], "alerts")
    event = Event("alert.snooze", "dashboard", {"alert_id": alert_id, **body.model_dump()})
    await request.app[EMIT_KEY](event)
    log.warning("alert.snoozed", alert_id=alert_id, hours=body.hours)
    raise web.HTTPSeeOther("/alerts?done=snoozed")


async def override(request: web.Request) -> web.Response:
    """POST /scopes/{number}/override: as POST /api/v1/scopes/{number}/override does."""
    _, form = await guarded(request)
    try:
        body = Override.model_validate(fields(form, "by", "reason"))
    except ValidationError as err:
        return await refusal(request, 422, problems(err), "alerts")
    number = request.match_info["number"]
    scopes = {s["number"]: s for s in await request.app[DASHBOARD_KEY].query(scope_states)}
    if number not in scopes:
        return await refusal(request, 404, [f"no scope {number} has been reprocessed"], "alerts")
    if not scopes[number]["blocked"]:
        return await refusal(request, 409, [f"scope {number} is not blocked"], "alerts")
    event = Event("reprocessing.override", "dashboard", {"scope": number, **body.model_dump()})
    await request.app[EMIT_KEY](event)
    log.warning("scope.override", scope=number)
    raise web.HTTPSeeOther("/alerts?done=overridden")


async def _outbox_action(request: web.Request, action: str) -> web.Response:
    _, form = await guarded(request)
    try:
        body = OutboxAction.model_validate(fields(form, "by", "reason"))
    except ValidationError as err:
        return await refusal(request, 422, problems(err), "dead-letters")
    if action == "discard" and body.reason is None:
        return await refusal(request, 422, ["reason: required to discard"], "dead-letters")
    message_id = int(request.match_info["message_id"])
    actor = f"dashboard:{body.by}"
    async with request.app[DASHBOARD_KEY].operator_db.use() as db:
        if action == "retry":
            changed = await queries.retry(db, [message_id], actor=actor)
        else:
            changed = await queries.discard(db, [message_id], actor=actor, reason=body.reason or "")
    if not changed:
        found = [f"message {message_id} is not dead or pending (already handled?)"]
        return await refusal(request, 409, found, "dead-letters")
    log.info(f"outbox.{action}", message_id=message_id)
    done = {"retry": "retried", "discard": "discarded"}[action]
    raise web.HTTPSeeOther(f"/dead-letters?done={done}")


async def retry(request: web.Request) -> web.Response:
    """POST /dead-letters/{id}/retry: re-queue it now, audited (as `edge-agent outbox retry`)."""
    return await _outbox_action(request, "retry")


async def discard(request: web.Request) -> web.Response:
    """POST /dead-letters/{id}/discard: give up on it, audited with the reason."""
    return await _outbox_action(request, "discard")


async def dead_letter(request: web.Request) -> web.Response:
    """GET /dead-letters/{id}: payload and answer; operators only (payloads name patients)."""
    dashboard = request.app[DASHBOARD_KEY]
    viewer = Viewer(dashboard.sessions.of(request))
    if not viewer.operator:
        raise web.HTTPSeeOther(f"/login?next={request.path}")
    message_id = int(request.match_info["message_id"])
    async with dashboard.operator_db.use() as db:
        message = await queries.get_message(db, message_id)
    if message is None:
        raise web.HTTPNotFound(text=f"no message {message_id}")
    body = layout(
        name="dead-letters",
        chinese=f"消息 {message_id}",
        english=f"Message {message_id}",
        viewer=viewer,
        live=message_detail(dashboard, viewer, message),
        here=request.path,
        notice=Markup(""),
        zone=dashboard.zone,
    )
    return web.Response(text=body, content_type="text/html")
