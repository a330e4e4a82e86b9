"""What HIS and PACS call on the agent for IDCAS: page links (a URL, or a 302 to a freshly signed
one), the WebApis relayed synchronously, print flags and a day's counts journaled for the outbox.
Logs name the page or API and the outcome, never a value: links carry patient identifiers."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import partial
from typing import Any

import structlog
from aiohttp import web

from agent.endpoints import EMIT_KEY, Endpoints, RouteDef
from agent.events import Event
from agent.uplinks.idcas_archive import webapi
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.idcas_archive.links import LinkError
from agent.uplinks.idcas_archive.pages import PAGES
from agent.uplinks.idcas_archive.statistics import COUNTS, relayed_event
from agent.uplinks.idcas_archive.uplink import PRINT_FLAG, IdcasArchiveUplink
from agent.uplinks.kit.request import TRANSPORT_ERRORS

log = structlog.get_logger(__name__)
OPEN_PATH = "/idcas/open/{page}"
LINK_PATH = "/api/v1/idcas/links/{page}"
API_PATH = "/api/v1/idcas/webapi/{api}"
PRINT_FLAG_PATH = "/api/v1/idcas/print-flag"
COUNTS_PATH = "/api/v1/idcas/statistics"
MAX_COUNT = 10_000_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, ensure_ascii=False))


def _refused(err: LinkError) -> web.Response:
    status = 404 if any(p.startswith(("page:", "api:")) for p in err.problems) else 422
    return _json({"error": "bad parameters", "problems": err.problems}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise LinkError(["body: not JSON"]) from err
    if not isinstance(body, dict):
        raise LinkError(["body: must be a JSON object"])
    token = body.pop("token", None)
    if isinstance(token, dict):  # the token's JSON fields given apart (4.2)
        body.update({f"token.{k}": v for k, v in token.items()})
    elif token is not None:
        raise LinkError(["token: must be an object of the token's fields"])
    return body


async def _link(uplink: IdcasArchiveUplink, page: str, values: dict[str, Any]) -> str:
    return await uplink.fresh_link(page, values)


async def post_link(uplink: IdcasArchiveUplink, request: web.Request) -> web.Response:
    """POST /api/v1/idcas/links/{page}: 200 {url, page}, 404 unknown page, 422, 503."""
    page = request.match_info["page"]
    try:
        url = await _link(uplink, page, await _body(request))
    except LinkError as err:
        log.info("idcas.link_refused", page=_known(page), problems=len(err.problems))
        return _refused(err)
    except TRANSPORT_ERRORS as err:
        log.warning("idcas.link_unavailable", page=page, error=type(err).__name__)
        return _json({"error": "no user token from the IDCAS platform now"}, 503)
    log.info("idcas.link_built", page=page)
    return _json({"page": page, "url": url})


async def open_page(uplink: IdcasArchiveUplink, request: web.Request) -> web.StreamResponse:
    """GET /idcas/open/{page}?…: 302 to the page signed now (the link HIS embeds never expires)."""
    page = request.match_info["page"]
    values: dict[str, Any] = {}
    for name, value in request.query.items():
        values[name] = value
    try:
        url = await _link(uplink, page, values)
    except LinkError as err:
        log.info("idcas.open_refused", page=_known(page), problems=len(err.problems))
        return _refused(err)
    except TRANSPORT_ERRORS as err:
        log.warning("idcas.open_unavailable", page=page, error=type(err).__name__)
        return _json({"error": "no user token from the IDCAS platform now"}, 503)
    return web.Response(
        status=302,
        headers={"Location": url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def relay(uplink: IdcasArchiveUplink, request: web.Request) -> web.Response:
    """GET or POST /api/v1/idcas/webapi/{api}: the platform's {code, msg, data}, 502, 503."""
    name = request.match_info["api"]
    try:
        if name not in webapi.SYNCHRONOUS and name in webapi.APIS:
            raise LinkError([f"api: {name} goes through the outbox: POST {PRINT_FLAG_PATH}"])
        values: dict[str, Any] = dict(request.query) if request.method == "GET" else {}
        if request.method == "POST":
            values.update(await _body(request))
        relayed = await uplink.call(name, values)
        counted = uplink.config.statistics.source == "relayed" and name == "recognition"
        if counted and relayed.status == 200:
            now = datetime.now(uplink.zone)
            await request.app[EMIT_KEY](relayed_event(uplink.name, str(values["visit_id"]), now))
    except LinkError as err:
        log.info("idcas.webapi_refused", api=_known(name, webapi.APIS), problems=len(err.problems))
        return _refused(err)
    log.info("idcas.webapi", api=name, status=relayed.status)
    return _json(relayed.body, relayed.status)


async def print_flag(uplink: IdcasArchiveUplink, request: web.Request) -> web.Response:
    """POST /api/v1/idcas/print-flag: 7.9 journaled, then sent by the outbox; 202 {event_id}."""
    try:
        values = await _body(request)
        values.setdefault("print_type", "Result")
        values.setdefault("org_code", uplink.config.org_code)
        params = webapi.check(webapi.APIS["print-flag"], values)
    except LinkError as err:
        return _refused(err)
    event = Event(PRINT_FLAG, "api", {"uplink": uplink.name, "params": params})
    await request.app[EMIT_KEY](event)
    log.info("idcas.print_flag_queued", event_id=event.id)
    return _json({"event_id": event.id}, 202)


async def post_counts(uplink: IdcasArchiveUplink, request: web.Request) -> web.Response:
    """POST /api/v1/idcas/statistics {day, patients_cnt, work_stations?}: a day's counts,
    posted at that day's slot (6.2); 202 {event_id}. The first counts of a day are the ones sent."""
    try:
        body = await _body(request)
        day = _day(body.get("day"))
        counts: dict[str, int] = {
            k: _count(body, k) for k in ("patients_cnt", "work_stations") if k in body
        }
        if "patients_cnt" not in counts:
            raise LinkError(["patients_cnt: required"])
        if "work_stations" not in counts and uplink.config.statistics.work_stations is None:
            raise LinkError(["work_stations: required ([statistics] work_stations is not set)"])
        unknown = sorted(set(body) - {"day", "patients_cnt", "work_stations"})
        if unknown:
            raise LinkError([f"{name}: no such field" for name in unknown])
    except LinkError as err:
        return _refused(err)
    event = Event(COUNTS, "api", {"uplink": uplink.name, "day": day, **counts})
    await request.app[EMIT_KEY](event)
    log.info("idcas.counts_posted", day=day)
    return _json({"event_id": event.id, "day": day}, 202)


def _day(raw: Any) -> str:
    try:
        return date.fromisoformat(str(raw)).isoformat()
    except ValueError as err:
        raise LinkError(["day: required, a date yyyy-MM-dd"]) from err


def _count(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise LinkError([f"{name}: a whole number from 0"])
    return value


def _known(name: str, known: Any = PAGES) -> str:
    return name if name in known else "unknown"


def api_routes(name: str, config: Any, uplink: Any) -> list[RouteDef]:
    """The local API's IDCAS routes (behind its token)."""
    assert isinstance(config, IdcasArchiveConfig) and isinstance(uplink, IdcasArchiveUplink)
    routes = [
        RouteDef("POST", LINK_PATH, partial(post_link, uplink)),
        RouteDef("GET", API_PATH, partial(relay, uplink)),
        RouteDef("POST", API_PATH, partial(relay, uplink)),
        RouteDef("POST", PRINT_FLAG_PATH, partial(print_flag, uplink)),
        RouteDef("POST", COUNTS_PATH, partial(post_counts, uplink)),
    ]
    if config.open_on_api:
        routes.append(RouteDef("GET", OPEN_PATH, partial(open_page, uplink)))
    return routes


def endpoints(name: str, config: Any, uplink: Any) -> Endpoints:
    """The HIS-facing listener: GET /idcas/open/{page} only, behind its allow-list."""
    assert isinstance(config, IdcasArchiveConfig)
    return Endpoints(config.listener, [RouteDef("GET", OPEN_PATH, partial(open_page, uplink))])
