"""What HIS and the provincial platform call on the agent (seed 003 §3.4): HIS posts orders to
the local API (journaled before the 202, then sent by the outbox) and reads their state; the
platform calls SynStatusInfo on the uplink's own listener. Logs name outcomes, never values."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from functools import partial
from typing import Any

import structlog
from aiohttp import web

from agent.endpoints import EMIT_KEY, QUERY_KEY, Endpoints, RouteDef
from agent.events import Event
from agent.uplinks.provincial_imaging import elements, soap
from agent.uplinks.provincial_imaging.config import ProvincialImagingConfig
from agent.uplinks.provincial_imaging.orders import EXAM_STATUSES, ORDER, STATUS, find_orders

log = structlog.get_logger(__name__)
ORDERS_PATH = "/api/v1/his-orders"
ORDER_PATH = "/api/v1/his-orders/{apply_no}"
MAX_LIMIT = 500
CODE = "code"  # the attribute of coded elements (ExamStatus, PerformDept, Operater)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, ensure_ascii=False))


def _strays(request: web.Request, *known: str) -> web.Response | None:
    """422 naming query parameters the route does not take (a typo must not pass unseen)."""
    unknown = sorted({k for k in request.query if k not in known})
    if not unknown and all(len(request.query.getall(k)) == 1 for k in known if k in request.query):
        return None
    problems = [f"{k}: no such parameter" for k in unknown] or ["a parameter given twice"]
    return _json({"error": "bad query", "problems": problems}, 422)


async def post_order(
    name: str, config: ProvincialImagingConfig, request: web.Request
) -> web.Response:
    """POST /api/v1/his-orders: an order checked against §3.4.1.1's table; 202 once journaled."""
    stray = _strays(request)
    if stray is not None:
        return stray
    try:
        document = json.loads(await request.read())
        order = elements.normalise(document)
    except (ValueError, UnicodeDecodeError):  # OrderError is a ValueError too
        return _json({"error": "bad order", "problems": ["body: a JSON object"]}, 400)
    rules = config.rules()
    problems = elements.check(order, rules)
    if problems:
        log.info("provincial.order_refused", problems=len(problems))
        return _json({"error": "bad order", "problems": problems}, 422)
    apply_no = elements.apply_no(order, rules)
    event = Event(ORDER, "api", {"uplink": name, "apply_no": apply_no, "order": order})
    await request.app[EMIT_KEY](event)
    log.info("provincial.order_queued", event_id=event.id, action=order["Action"])
    return _json({"event_id": event.id, "apply_no": apply_no, "action": order["Action"]}, 202)


async def get_order(
    name: str, config: ProvincialImagingConfig, request: web.Request
) -> web.Response:
    """GET /api/v1/his-orders/{apply_no} (with or without the prefix): 200 its state, or 404."""
    stray = _strays(request)
    if stray is not None:
        return stray
    apply_no = elements.prefixed(request.match_info["apply_no"], config.hospital_id)
    found = await request.app[QUERY_KEY](partial(find_orders, uplink=name, apply_no=apply_no))
    if not found:
        return _json({"error": "no such order"}, 404)
    return _json(found[0])


async def list_orders(name: str, request: web.Request) -> web.Response:
    """GET /api/v1/his-orders?limit=: the newest orders with their state."""
    stray = _strays(request, "limit")
    if stray is not None:
        return stray
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return _json({"error": "bad query", "problems": [f"limit: 1 to {MAX_LIMIT}"]}, 422)
    found = await request.app[QUERY_KEY](partial(find_orders, uplink=name, limit=int(raw)))
    return _json({"orders": found})


async def status_service(
    name: str, config: ProvincialImagingConfig, request: web.Request
) -> web.Response:
    """POST the SOAP SynStatusInfo call: journaled, then `<response><code>0`; -3 if unreadable."""
    operation = soap.STATUS[0]
    try:
        text = soap.argument(await request.read(), operation)
        status = read_status(text, config.hospital_id)
    except soap.SoapError as err:
        log.info("provincial.status_refused", reason=str(err))
        result = soap.result_xml("-3", f"传入信息有误: {err}")
        return _soap(soap.response(operation, result, config.namespace))
    event = Event(STATUS, "platform", {"uplink": name, **status})
    await request.app[EMIT_KEY](event)
    log.info("provincial.status_received", event_id=event.id, status=status["status"])
    return _soap(soap.response(operation, soap.result_xml("0", "成功"), config.namespace))


async def status_wsdl(config: ProvincialImagingConfig, request: web.Request) -> web.Response:
    """GET <status_path>?wsdl: the SynStatusInfo WSDL, addressed as the platform reached us."""
    if "wsdl" not in {k.lower() for k in request.query}:
        return web.Response(status=404, text="GET ?wsdl, or POST a SOAP call")
    location = str(request.url.with_query(None))
    text = soap.wsdl(*soap.STATUS, config.namespace, location)
    return web.Response(text=text, content_type="text/xml", charset="utf-8")


def _soap(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


def read_status(text: str, hospital_id: str) -> dict[str, Any]:
    """The journaled fields of a SynStatusInfo XmlDocument; SoapError naming what is wrong."""
    root = soap.parse(text.encode("utf-8"))
    exam = root.find("Exam")
    if exam is None:
        raise soap.SoapError("no Exam element")
    apply_no = (exam.findtext("ApplyNo") or "").strip()
    status = exam.find("ExamStatus")
    said = (status.get(CODE) or status.text or "").strip() if status is not None else ""
    if not apply_no:
        raise soap.SoapError("ApplyNo: required")
    if said not in EXAM_STATUSES:
        raise soap.SoapError(f"ExamStatus: code must be one of {', '.join(EXAM_STATUSES)}")
    date, time = _text(exam, "OperateDate"), _text(exam, "OperateTime")
    return {
        "apply_no": elements.prefixed(apply_no, hospital_id),
        "status": said,
        "status_name": ((status.text or "").strip() if status is not None else "")
        or EXAM_STATUSES[said],
        "exam_no": _text(exam, "ExamNo"),
        "order_no": _text(exam, "OrderNo"),
        "sick_no": _text(exam, "SickNo"),
        "patient_source": _text(exam, "PatientSource"),
        "perform_dept": _coded(exam.find("PerformDept")),
        "operator": _coded(exam.find("Operater")),
        "operated_at": " ".join(v for v in (date, time) if v) or None,
        "image_url": _text(exam, "ImageUrl"),
    }


def _text(node: ET.Element, name: str) -> str | None:
    value = (node.findtext(name) or "").strip()
    return value or None


def _coded(node: ET.Element | None) -> dict[str, str | None] | None:
    if node is None:
        return None
    return {"code": node.get("code"), "name": (node.text or "").strip() or None}


def api_routes(name: str, config: Any, uplink: Any) -> list[RouteDef]:
    """The local API's routes of scenario 3 (behind its token)."""
    assert isinstance(config, ProvincialImagingConfig)
    return [
        RouteDef("POST", ORDERS_PATH, partial(post_order, name, config)),
        RouteDef("GET", ORDERS_PATH, partial(list_orders, name)),
        RouteDef("GET", ORDER_PATH, partial(get_order, name, config)),
    ]


def endpoints(name: str, config: Any) -> Endpoints:
    """The platform-facing listener: SynStatusInfo (SOAP) and its WSDL, behind the allow-list."""
    assert isinstance(config, ProvincialImagingConfig)
    return Endpoints(
        config.listener,
        [
            RouteDef("POST", config.status_path, partial(status_service, name, config)),
            RouteDef("GET", config.status_path, partial(status_wsdl, config)),
        ],
    )
