"""The dashboard's routes: pages, the live stream (SSE), login and logout, static files."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import SecretStr

from agent.errors import AgentError
from agent.inputs import control_problem
from agent.reprocessing.config import ReprocessingConfig
from agent.web.bodies import read_form
from agent.web.context import ROW_ID, Query
from agent.web.dashboard import actions
from agent.web.dashboard.context import DASHBOARD_KEY, Dashboard, Viewer
from agent.web.dashboard.lookback_page import add_lookback_page
from agent.web.dashboard.pages import PAGES, Page, layout, notice
from agent.web.dashboard.render import Markup, both, render
from agent.web.dashboard.sessions import (
    COOKIE,
    CSRF_FIELD,
    ROUTE_PREFIX,
    SESSIONS_KEY,
    SessionStore,
    csrf_matches,
    is_dashboard_route,
)
from agent.web.metrics import Observe

log = structlog.get_logger(__name__)
STATIC = Path(__file__).parents[1] / "static"
HEARTBEAT = 15.0  # seconds: a comment line keeps proxies and the browser from giving up
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
        " object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def add_dashboard_routes(
    app: web.Application,
    *,
    token: SecretStr,
    observe: Observe,
    query: Query,
    database: Path,
    read_only_open: bool,
    reprocessing: Sequence[ReprocessingConfig] = (),
    session_hours: float = 12.0,
    interval: float = 1.0,
) -> None:
    """Serve the dashboard from `app` (made by make_app: its EMIT_KEY is used for actions)."""
    sessions = SessionStore(
        token.get_secret_value().encode(),
        session_hours * 3600,
        logouts=database.parent / "dashboard-logouts.json",
    )
    dashboard = Dashboard(
        observe, query, database, sessions, read_only_open, tuple(reprocessing), interval
    )
    app[DASHBOARD_KEY] = dashboard
    app[SESSIONS_KEY] = sessions
    stopping = asyncio.Event()

    async def stop_streams(_: web.Application) -> None:
        stopping.set()  # live streams end now, or the server would wait for them at shutdown

    async def close_db(_: web.Application) -> None:
        await dashboard.operator_db.close()

    app.on_shutdown.append(stop_streams)
    app.on_cleanup.append(close_db)
    app.on_response_prepare.append(security_headers)
    for page in PAGES.values():
        app.router.add_get(page.path, partial(show_page, page), name=f"{ROUTE_PREFIX}{page.name}")
    route = partial(_route, app)
    route("GET", "/events", partial(live_stream, stopping), "events")
    route("GET", "/login", login_page, "login")
    route("POST", "/login", login, "login_post")
    route("POST", "/logout", logout, "logout")
    route("GET", f"/dead-letters/{{message_id:{ROW_ID}}}", actions.dead_letter, "dead_letter")
    route("POST", f"/alerts/{{alert_id:{ROW_ID}}}/acknowledge", actions.acknowledge, "acknowledge")
    route("POST", f"/alerts/{{alert_id:{ROW_ID}}}/snooze", actions.snooze, "snooze")
    route("POST", "/alerts/acknowledge", actions.acknowledge_selected, "acknowledge_selected")
    route("POST", "/scopes/{number}/override", actions.override, "override")
    route("POST", f"/dead-letters/{{message_id:{ROW_ID}}}/retry", actions.retry, "retry")
    route("POST", f"/dead-letters/{{message_id:{ROW_ID}}}/discard", actions.discard, "discard")
    add_lookback_page(app)
    app.router.add_static("/static", STATIC, name=f"{ROUTE_PREFIX}static")


def _route(
    app: web.Application, method: str, path: str, handler: actions.Handler, name: str
) -> None:
    app.router.add_route(method, path, handler, name=f"{ROUTE_PREFIX}{name}")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """What every dashboard answer carries: CSP 'self' only, no framing, no referrer."""
    if is_dashboard_route(request):
        response.headers.update(HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")


def viewer_of(request: web.Request) -> Viewer:
    """The request's session, if any."""
    return Viewer(request.app[DASHBOARD_KEY].sessions.of(request))


def may_read(request: web.Request, viewer: Viewer) -> bool:
    """Logged in, or read-only pages are configured open."""
    return viewer.operator or request.app[DASHBOARD_KEY].read_only_open


def to_login(request: web.Request) -> web.HTTPSeeOther:
    """The redirect to the login page, coming back here afterwards."""
    return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")


async def show_page(page: Page, request: web.Request) -> web.Response:
    """GET a page: the layout with its live fragment as of now."""
    viewer = viewer_of(request)
    if not may_read(request, viewer):
        raise to_login(request)
    dashboard = request.app[DASHBOARD_KEY]
    body = layout(
        name=page.name,
        chinese=page.chinese,
        english=page.english,
        viewer=viewer,
        live=await page.live(dashboard, viewer),
        here=request.path,
        live_name=page.name,
        zone=dashboard.zone,
        before=page.before(dashboard, viewer) if page.before else Markup(""),
        notice=notice(request.query.get("done")),
    )
    return web.Response(text=body, content_type="text/html")


async def live_stream(stopping: asyncio.Event, request: web.Request) -> web.StreamResponse:
    """GET /events?page=<name>: the page's live fragment as SSE, sent whenever it changes."""
    page = PAGES.get(request.query.get("page", ""))
    if page is None:
        raise web.HTTPNotFound(text="no such page")
    dashboard = request.app[DASHBOARD_KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    last: str | None = None
    quiet = 0.0
    try:
        await response.write(b"retry: 2000\n\n")
        # Without a session (expired, logged out, the token rotated) the stream says so as an
        # event: a refused stream would leave the page reconnecting, unseen, for ever.
        while not stopping.is_set():
            viewer = viewer_of(request)
            if not may_read(request, viewer):  # logged out or expired meanwhile
                await response.write(b"event: login\ndata: {}\n\n")
                break
            try:
                fragment = await page.live(dashboard, viewer)
            except (AgentError, sqlite3.Error) as err:
                log.warning("dashboard.live_failed", page=page.name, error=type(err).__name__)
                fragment = render(
                    '<p class="notice bad">$t</p>', t=both("数据暂不可用", "Data unavailable")
                )
            if fragment != last:
                data = json.dumps({"html": fragment}, ensure_ascii=False)
                await response.write(f"event: fragment\ndata: {data}\n\n".encode())
                last, quiet = fragment, 0.0
            elif quiet >= HEARTBEAT:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            try:
                await asyncio.wait_for(stopping.wait(), dashboard.interval)
            except TimeoutError:
                quiet += dashboard.interval
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away: nothing to tell anyone
    return response


LOGIN = (
    '<form method="post" action="/login" class="login">'
    '<input type="hidden" name="next" value="$next">'
    '<label>$label <input type="password" name="token" required autofocus'
    ' autocomplete="current-password"></label><button type="submit">$go</button></form>'
)


def login_form(request: web.Request, target: str, problem: str = "") -> Markup:
    """The login page (with a problem line after a refused attempt)."""
    viewer = viewer_of(request)
    form = render(
        LOGIN, next=target, label=both("操作员令牌", "Operator token"), go=both("登录", "Log in")
    )
    return layout(
        name="login",
        chinese="登录",
        english="Log in",
        viewer=viewer,
        live=form,
        here="/login",
        notice=notice(request.query.get("done"), [problem] if problem else None),
        zone=request.app[DASHBOARD_KEY].zone,
    )


def safe_target(value: str | None) -> str:
    """Where to go after login: a local path only (no open redirect, no header injection)."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and control_problem(value) is None
    ):
        return value
    return "/"


async def login_page(request: web.Request) -> web.Response:
    """GET /login"""
    body = login_form(request, safe_target(request.query.get("next")))
    return web.Response(text=body, content_type="text/html")


async def login(request: web.Request) -> web.Response:
    """POST /login: trade the operator token for a session cookie (the token is not kept)."""
    form = await read_form(request)
    target = safe_target(form.fields.get("next"))
    store = request.app[SESSIONS_KEY]
    remote = request.remote or ""
    wait = math.ceil(store.retry_after(remote))
    if wait > 0:
        log.warning("dashboard.login_throttled", remote=remote)
        problem = f"尝试次数过多，请 {wait} 秒后再试 / too many wrong tokens: try again in {wait} s"
        return web.Response(
            text=login_form(request, target, problem),
            content_type="text/html",
            status=429,
            headers={"Retry-After": str(wait)},
        )
    session_id = store.login(form.fields.get("token", ""), remote)
    if session_id is None:
        log.warning("dashboard.login_refused", remote=remote)
        problem = "令牌错误 / wrong token"
        return web.Response(
            text=login_form(request, target, problem), content_type="text/html", status=401
        )
    log.info("dashboard.login", remote=request.remote)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(store.lifetime),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    """POST /logout (with the CSRF token): end the session, forget the cookie; 403 without the
    token (another site must not be able to log an operator out)."""
    store = request.app[SESSIONS_KEY]
    session = store.of(request)
    form = await read_form(request)
    if session is not None:
        if not csrf_matches(session, form.fields.get(CSRF_FIELD, "")):
            actions.log_refused(request, "csrf")
            raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page")
        # It writes the remembered logouts to the state directory: off the event loop.
        await asyncio.to_thread(store.logout, request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/login?done=logged_out")
    response.del_cookie(COOKIE, path="/")
    raise response
