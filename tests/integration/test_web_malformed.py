"""Malformed and hostile requests to the local API and dashboard: a clear 4xx and one log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from agent.errors import UnstorableEventError
from agent.web.dashboard.sessions import COOKIE
from agent.web.guard import guard
from tests.unit.test_imaging_index import exam_doc
from tests.web_harness import AUTH, TOKEN, AgentServer, Site, handlers, open_site

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
Logs = list[MutableMapping[str, Any]]
RINSE = "/api/v1/quality/rinse-water"
RINSE_FIELDS = {"device": "WTE-01", "status": "normal", "recorded_by": "N001"}
DEEP = b"[" * 100_000 + b"]" * 100_000
PART = b'--a\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc'


@pytest.fixture
async def site(open_journal, tmp_path) -> AsyncIterator[Site]:
    journal = await open_journal.open(handlers=handlers())
    serving = open_site(journal, tmp_path / "journal.db", tmp_path / "photos")
    yield await anext(serving)
    await serving.aclose()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Standard-library records at ERROR or above, or with a traceback (aiohttp's own)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def assert_refused_once(logs: Logs, caplog: pytest.LogCaptureFixture) -> None:
    assert [(e["event"], e["log_level"]) for e in logs] == [("web.refused", "warning")]
    assert errors(caplog) == []


MALFORMED = [
    pytest.param("/api/v1/exams", {**AUTH, **JSON}, DEEP, 400, id="exam-json-100000-deep"),
    pytest.param(RINSE, {**AUTH, **JSON}, DEEP, 400, id="quality-json-100000-deep"),
    pytest.param("/api/v1/patients", {**AUTH, **JSON}, DEEP, 400, id="patients-json-deep"),
    pytest.param(
        RINSE, {**AUTH, "Content-Type": "multipart/form-data"}, PART, 400, id="no-boundary"
    ),
    pytest.param(
        RINSE,
        {**AUTH, "Content-Type": "multipart/form-data; boundary=b"},
        PART + b"\r\n--a--\r\n",
        400,
        id="wrong-boundary",
    ),
    pytest.param(
        RINSE, {**AUTH, "Content-Type": "multipart/form-data; boundary=a"}, PART, 400, id="cut"
    ),
    pytest.param(RINSE, {**AUTH, **FORM}, b"device=\xff\xfe", 400, id="urlencoded-not-utf8"),
    pytest.param(RINSE, {**AUTH, **FORM}, b"device=%ff", 400, id="urlencoded-escape-not-utf8"),
    pytest.param(
        RINSE,
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded; charset=nope"},
        b"device=a",
        400,
        id="urlencoded-charset-nope",
    ),
    pytest.param(RINSE, {**AUTH, "Content-Type": "text/csv"}, b"a,b", 415, id="wrong-type"),
    pytest.param("/login", FORM, b"token=\xff\xfe", 400, id="login-not-utf8"),
    pytest.param(
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded; charset=nope"},
        b"token=a",
        400,
        id="login-charset-nope",
    ),
    pytest.param(
        "/login", {"Content-Type": "multipart/form-data"}, PART, 400, id="login-no-boundary"
    ),
    pytest.param(
        "/login", {"Content-Type": "multipart/form-data; boundary=a"}, PART, 400, id="login-cut"
    ),
    pytest.param("/login", JSON, b"{}", 415, id="login-json"),
]


@pytest.mark.parametrize(("path", "headers", "body", "status"), MALFORMED)
async def test_a_malformed_body_is_a_4xx_with_one_warning(
    site, caplog, path, headers, body, status
):
    with capture_logs() as logs:
        response = await site.client.post(path, data=body, headers=headers, allow_redirects=False)
    assert response.status == status
    assert "Traceback" not in await response.text()
    assert_refused_once(logs, caplog)
    assert site.events() == []


async def test_a_limit_of_5000_digits_is_a_400(site, caplog):
    with capture_logs() as logs:
        response = await site.client.get(f"/api/v1/studies?limit={'9' * 5000}", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["problems"] == ["limit: an integer from 1 to 500"]
    assert_refused_once(logs, caplog)


async def test_a_row_id_too_large_for_the_journal_is_not_found(site, caplog):
    response = await site.client.post(
        f"/api/v1/alerts/{'9' * 30}/acknowledge", json={"by": "王护士"}, headers=AUTH
    )
    assert response.status == 404 and errors(caplog) == []


async def test_rinse_water_tested_in_year_1_is_refused_before_it_is_journaled(site, caplog):
    body = {**RINSE_FIELDS, "tested_at": "0001-01-01T00:00:00+14:00"}
    with capture_logs() as logs:
        response = await site.client.post(RINSE, json=body, headers=AUTH)
    assert response.status == 422
    assert (await response.json())["problems"] == [
        "tested_at: Value error, year 1 is outside 2000-2099"
    ]
    assert_refused_once(logs, caplog)
    assert site.events() == [] and site.failed_handlers() == []


async def test_an_exam_dated_at_the_calendar_end_is_refused(site):
    response = await site.client.post(
        "/api/v1/exams", json=exam_doc(time="9999-12-31 23:59:59"), headers=AUTH
    )
    assert response.status == 422 and site.events() == []


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN", b"Infinity", b"9" * 400])
async def test_a_number_that_is_not_a_finite_value_is_refused(site, caplog, number):
    body = (
        b'{"ratio_number": "R1", "disinfectant": "opa", "duration_minutes": '
        + number
        + b', "frequency": "daily", "passed": true, "recorded_by": "N001"}'
    )
    with capture_logs() as logs:
        response = await site.client.post(
            "/api/v1/quality/disinfectant-tests", data=body, headers={**AUTH, **JSON}
        )
    assert response.status in {400, 422}
    assert_refused_once(logs, caplog)
    assert site.events() == []


CONTROL = ["\u0000", "\u001b[31m", "\u007f", "\u0085", "a\nb", "\u2028", "\u202e"]


@pytest.mark.parametrize("bad", CONTROL)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/patients", {"reader_id": "R9", "patient_id": "HIS0042"}),
        (RINSE, RINSE_FIELDS),
        ("/api/v1/exams", exam_doc()),
    ],
)
async def test_control_characters_in_text_are_refused(site, path, body, bad):
    body = {**body, next(iter(body)): f"x{bad}y"}
    response = await site.client.post(path, json=body, headers=AUTH)
    assert response.status == 422
    assert "control character" in str(await response.json())
    assert site.events() == []


async def test_line_breaks_are_kept_in_a_report_text(site):
    doc = exam_doc(impression="1. 胃窦炎\r\n2. 建议复查")
    response = await site.client.post("/api/v1/exams", json=doc, headers=AUTH)
    assert response.status == 201 and len(site.events()) == 1


async def test_a_dashboard_form_with_a_control_character_is_refused(site):
    csrf = await site.login()
    response = await site.client.post(
        "/alerts/1/acknowledge", data={"csrf": csrf, "by": "王\u0000"}, allow_redirects=False
    )
    assert response.status == 422 and site.events() == []


async def test_logout_without_the_csrf_token_keeps_the_session(site, caplog):
    csrf = await site.login()
    with capture_logs() as logs:
        response = await site.client.post("/logout", data={}, allow_redirects=False)
    assert response.status == 403
    assert COOKIE not in response.cookies  # not cleared
    assert [e["event"] for e in logs] == ["dashboard.refused"]
    assert "退出" in await (await site.client.get("/alerts")).text()  # still logged in
    response = await site.client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303 and response.cookies[COOKIE].value == ""


async def test_a_redirect_target_with_a_line_break_goes_home(site):
    response = await site.client.post(
        "/login", data={"token": TOKEN, "next": "/alerts\r\nSet-Cookie: x=1"}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/"


async def raw_exchange(site: Site, data: bytes, then_close: bool = False) -> bytes:
    """Send `data` on a fresh connection; the answer, or b"" after closing mid-request."""
    server = site.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(data)
    await writer.drain()
    if then_close:
        writer.close()
        await writer.wait_closed()
        return b""
    answer = await reader.read()
    writer.close()
    return answer


async def until_logged(logs: Logs) -> None:
    async with asyncio.timeout(10):
        while not logs:
            await asyncio.sleep(0.01)


GET = b"GET /healthz HTTP/1.1\r\nHost: agent\r\n"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(GET + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n", "LineTooLong", id="header"),
        pytest.param(TLS_HELLO, "BadHttpMethod", id="tls-first"),
        pytest.param(GET + b"\r\n" + TLS_HELLO, "BadHttpMethod", id="tls-after-a-request"),
    ],
)
async def test_bytes_aiohttp_cannot_parse_are_one_warning_line(site, caplog, data, error):
    with capture_logs() as logs:
        answer = await raw_exchange(site, data)
        await until_logged(logs)
    assert b"400 Bad Request" in answer
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [
        ("web.unreadable_request", "warning", error)
    ]
    assert errors(caplog) == []


async def test_a_client_gone_mid_body_is_one_warning_line(site, caplog):
    head = (
        f"POST /api/v1/patients HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with capture_logs() as logs:
        await raw_exchange(site, head.encode() + b'{"reader_id": "R', then_close=True)
        await until_logged(logs)
    assert [(e["event"], e["log_level"]) for e in logs] == [("web.client_gone", "warning")]
    assert errors(caplog) == [] and site.events() == []


async def test_a_handler_bug_is_a_500_with_one_error_line_and_no_traceback(caplog):
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("patient 张三")

    app = web.Application(middlewares=[guard])
    app.router.add_get("/broken", broken)
    async with TestClient(AgentServer(app)) as client:
        with capture_logs() as logs:
            response = await client.get("/broken")
        assert response.status == 500
        assert "张三" not in await response.text()
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [
        ("web.handler_crashed", "error", "KeyError")
    ]
    assert "张三" not in str(logs) and errors(caplog) == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(b"Authorization: Bearer \xff\xfe\r\n", b"401", id="token-not-utf8"),
        pytest.param(b"Cookie: edge_agent_session=\xff\xfe\r\n", b"303", id="cookie-not-utf8"),
    ],
)
async def test_credentials_that_are_not_utf8_are_refused(site, caplog, headers, status):
    path = b"/api/v1/alerts" if b"Authorization" in headers else b"/alerts"
    request = (
        b"GET " + path + b" HTTP/1.1\r\nHost: agent\r\n" + headers + b"Connection: close\r\n\r\n"
    )
    answer = await raw_exchange(site, request)
    assert answer.split(b" ")[1] == status
    assert errors(caplog) == []


async def test_what_the_journal_cannot_store_is_a_422_not_a_500(caplog):
    async def unstorable(request: web.Request) -> web.Response:
        raise UnstorableEventError("quality.rinse_water event from api: year 0 is out of range")

    app = web.Application(middlewares=[guard])
    app.router.add_post("/record", unstorable)
    async with TestClient(AgentServer(app)) as client:
        with capture_logs() as logs:
            response = await client.post("/record", json={})
        assert response.status == 422
    assert_refused_once(logs, caplog)
