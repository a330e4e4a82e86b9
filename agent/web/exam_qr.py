"""Local API for PACS printing a report: the QR link the insurance cloud gave for an exam (seed 004
§4.3), as the link and hint text, or as a PNG of the code."""

from __future__ import annotations

import base64
import binascii
import io
import json
import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

import segno
from aiohttp import web

from agent.imaging.exams import exam_by_number
from agent.journal.outbox import latest
from agent.web.context import QUERY_KEY, answer
from agent.web.files import CONTENT_TYPES, file_type

AUDITED = "report.audited"  # the message an audited report queues for the cloud's QR link


def add_exam_qr_routes(app: web.Application, uplinks: Sequence[str], hint: str) -> None:
    """Register the QR routes over the QR answers of `uplinks` (insurance_imaging with qr on)."""
    found = partial(qr_answer, uplinks=list(uplinks))
    app.router.add_get("/api/v1/exams/{number}/qr", partial(get_qr, found, hint))
    app.router.add_get("/api/v1/exams/{number}/qr.png", partial(get_qr_png, found))


def qr_answer(conn: sqlite3.Connection, number: str, uplinks: list[str]) -> tuple[str, Any] | None:
    """(state of the newest QR request, the link or Base64 image it got) for an exam number or
    accession; None when no exam or no request is known."""
    record = exam_by_number(conn, number)
    if record is None or not uplinks:
        return None
    found = latest(conn, uplinks, AUDITED, f"exam:{record['exam_no']}")
    if found is None:
        return None
    state, response = found
    try:
        data = json.loads(response or "").get("data") if state == "delivered" else None
    except (ValueError, AttributeError):
        data = None
    return state, data


async def _lookup(found: Any, request: web.Request) -> tuple[str, Any] | web.Response:
    number = request.match_info["number"]
    result = await request.app[QUERY_KEY](partial(found, number=number))
    if result is None:
        return answer({"error": "no QR link asked for this exam (not audited, or unknown)"}, 404)
    state, data = result
    if state != "delivered" or not isinstance(data, str) or not data:
        return answer({"error": "the QR link is not there yet", "state": state}, status=404)
    return state, data


async def get_qr(found: Any, hint: str, request: web.Request) -> web.Response:
    """GET /api/v1/exams/{number}/qr: {"data": link or Base64 image, "hint", "png"}; 404."""
    looked = await _lookup(found, request)
    if isinstance(looked, web.Response):
        return looked
    number = request.match_info["number"]
    return answer({"data": looked[1], "hint": hint, "png": f"/api/v1/exams/{number}/qr.png"})


async def get_qr_png(found: Any, request: web.Request) -> web.Response:
    """GET /api/v1/exams/{number}/qr.png: the QR code of the link (a qrcode answer's image as
    the cloud sent it); 404."""
    looked = await _lookup(found, request)
    if isinstance(looked, web.Response):
        return looked
    data = looked[1]
    image = _image(data)
    if image is None:  # a link: drawn here
        out = io.BytesIO()
        segno.make(data, error="m").save(out, kind="png", scale=8, border=4)
        image = out.getvalue()
    kind = file_type(image) or "png"
    return web.Response(body=image, content_type=CONTENT_TYPES[kind])


def _image(data: str) -> bytes | None:
    """The image a qrcode answer carries (Base64, optionally as a data: URL); None for a link."""
    text = data.split(",", 1)[1] if data.startswith("data:") else data
    if text.startswith(("http://", "https://")):
        return None
    try:
        image = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None
    return image if file_type(image) in ("png", "jpg") else None
