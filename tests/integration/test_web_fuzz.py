"""Hypothesis-made requests against every local-API and dashboard form route.

Each route's valid body (its pydantic model's fields) is mutated — wrong types, huge and
non-finite numbers, control characters, implausible dates, deep nesting, unknown fields — and
sent as JSON, mutated bytes, urlencoded or (broken) multipart, under odd content types and
charsets. Never a 5xx or a traceback; and whatever is answered 2xx is journaled and its handlers
succeed, so it will be forwarded. A short seeded run is in the suite; `pytest -m slow` runs long.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from structlog.testing import capture_logs

from agent.imaging.exam_document import Exam
from agent.journal.alerts import Alert, raise_alert
from agent.web.dashboard.actions import OutboxAction
from agent.web.models import Acknowledgement, Override, PatientForUse
from agent.web.quality import CleaningEffectTest, DisinfectantTest, RinseWaterCheck
from tests.integration.test_quality_api import PNG
from tests.unit.test_imaging_index import exam_doc
from tests.web_harness import AUTH, TOKEN, Site, handlers, open_site

# Fuzzed part headers make aiohttp warn; the agent logs that as one line (agent.logs).
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionHeader")
SHORT = settings(max_examples=60)
LONG = settings(max_examples=1500)
CSRF = "<csrf>"  # replaced by the session's token when the request is sent
NOT_LOGGED = frozenset({"journal.handler_failed", "web.handler_crashed"})


@dataclass(frozen=True)
class Route:
    """A route that takes a body, a valid body for it, and the model that body must fit."""

    path: str
    model: type[BaseModel] | None  # None: a form without one (login, logout)
    valid: dict[str, Any]
    kind: str = "api"  # "api": the token; "form": a dashboard form (session + CSRF); "open"

    def fields(self) -> list[str]:
        """The names the body may hold."""
        return list(self.model.model_fields if self.model else self.valid)


ROUTES = {
    "patients": Route(
        "/api/v1/patients",
        PatientForUse,
        {"reader_id": "R9", "patient_id": "HIS0042", "patient_name": "张三"},
    ),
    "acknowledge": Route(
        "/api/v1/alerts/1/acknowledge", Acknowledgement, {"by": "王护士", "note": "重新浸泡"}
    ),
    "override": Route(
        "/api/v1/scopes/GIF-001/override", Override, {"by": "李", "reason": "re-soaked by hand"}
    ),
    "exams": Route("/api/v1/exams", Exam, exam_doc()),
    "disinfectant": Route(
        "/api/v1/quality/disinfectant-tests",
        DisinfectantTest,
        {
            "ratio_number": "OPA-2611-01",
            "disinfectant": "opa",
            "duration_minutes": 5,
            "tested_at": "2026-12-01T08:00:00+08:00",
            "frequency": "daily",
            "passed": True,
            "recorded_by": "N001",
        },
    ),
    "rinse-water": Route(
        "/api/v1/quality/rinse-water",
        RinseWaterCheck,
        {
            "device": "WTE-01",
            "status": "fault",
            "tested_at": "2026-12-01T08:00:00",
            "recorded_by": "N",
        },
    ),
    "cleaning-effect": Route(
        "/api/v1/quality/cleaning-effect-tests",
        CleaningEffectTest,
        {
            "scope": "GIF-001",
            "inspector": "N002",
            "passed": False,
            "photos": [base64.b64encode(PNG).decode()],
        },
    ),
    "form-acknowledge": Route(
        "/alerts/2/acknowledge", Acknowledgement, {"csrf": CSRF, "by": "王护士"}, "form"
    ),
    "form-override": Route(
        "/scopes/GIF-001/override",
        Override,
        {"csrf": CSRF, "by": "李", "reason": "re-soaked"},
        "form",
    ),
    "form-retry": Route(
        "/dead-letters/1/retry", OutboxAction, {"csrf": CSRF, "by": "张工"}, "form"
    ),
    "login": Route("/login", None, {"token": TOKEN, "next": "/alerts"}, "open"),
    "logout": Route("/logout", None, {"csrf": CSRF}, "form"),
    "form-discard": Route(
        "/dead-letters/1/discard",
        OutboxAction,
        {"csrf": CSRF, "by": "张工", "reason": "duplicate"},
        "form",
    ),
}


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as it is: a 100,000-deep array or a 400-digit number, which
    json.dumps itself could not write."""

    text: str


def deep(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


EDGE_TEXT = [
    "",
    " ",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-12:00",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "2026-02-30",
    "1899-12-31",
    "2100-01-01T00:00:00Z",
    "NaN",
    "Infinity",
    "9" * 400,
    "a" * 5000,
    "\u0000",
    "\r\n",
    "\u202e",
    "\ud7ff",
    "张三\u0085",
]
nasty = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # NaN, ±Infinity, -0.0, 1e308
    st.text(st.characters(codec="utf-8"), max_size=30),  # control characters included
    st.sampled_from(EDGE_TEXT),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.integers(min_value=1, max_value=100_000).map(deep),
    st.sampled_from(["1e400", "-1e400", "9" * 400, "1" + "0" * 5000, "-0", "1E-400"]).map(Raw),
)

# Values shaped like what a field takes, at and beyond its edges: a date in year 1 or 9999, at
# ±14 h, a number that is not finite, text with control characters.
OFFSETS = [None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))
EDGE_MOMENTS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "1999-12-31T23:59:59"]
iso_times = st.sampled_from(EDGE_MOMENTS) | st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(), moments, st.sampled_from(OFFSETS)
)
local_times = st.sampled_from(["0001-01-01 00:00:00", "9999-12-31 23:59:59"]) | moments.map(
    lambda m: f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"
)
days = st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
numbers = st.one_of(st.floats(), st.integers(min_value=-(10**20), max_value=10**20), nasty)
texts = st.text(st.characters(codec="utf-8"), max_size=40)


def shaped_like(name: Any, value: Any) -> st.SearchStrategy[Any]:
    """Values for the field `name` that now holds `value`: mostly of its kind, some nasty."""
    key = str(name)
    if key.endswith("_at"):
        kind = iso_times
    elif key.endswith("Time"):
        kind = local_times
    elif key == "birthDate":
        kind = days
    elif isinstance(value, int | float) and not isinstance(value, bool):
        kind = numbers
    elif isinstance(value, str):
        kind = texts
    else:
        return nasty
    return st.one_of(kind, nasty)


CHARSETS = ["", "", "; charset=utf-8", "; charset=latin-1", "; charset=nope"]
ODD_TYPES = [
    "text/plain",
    "application/xml",
    "",
    "multipart/mixed",
    "application/json; charset=utf-16",
    "application/json; charset=nope",
]


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (dict keys and list indexes)."""
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    paths = [prefix] if prefix else []
    for key, child in children:
        paths += leaf_paths(child, (*prefix, key))
    return paths


@st.composite
def mutated(draw: st.DrawFn, route: Route) -> dict[str, Any]:
    """The route's valid body with 0-3 edits: a nasty value, a field dropped, one unknown."""
    body = copy.deepcopy(route.valid)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3]))):
        top = [(name,) for name in route.fields()]
        paths = leaf_paths(body) + top + top  # the model's own fields more often
        path = draw(st.sampled_from(paths))
        *parents, last = path
        target: Any = body
        for key in parents:
            target = target[key]
        action = draw(st.sampled_from(["set", "set", "set", "drop", "unknown"]))
        if action == "unknown" and isinstance(target, dict):
            target[draw(st.text(max_size=12))] = draw(nasty)
        elif action == "drop" and isinstance(target, dict):
            target.pop(last, None)
        elif isinstance(target, dict):
            target[last] = draw(shaped_like(last, target.get(last)))
        elif isinstance(target, list) and last < len(target):
            target[last] = draw(nasty)
    return body


def dumps(body: Any, ensure_ascii: bool = False) -> str:
    """JSON text with NaN/Infinity literals as Python writes them, and Raw values as they are."""
    raw: list[str] = []

    def marker(value: Any) -> str:
        if isinstance(value, Raw):
            raw.append(value.text)
            return f"\x00raw{len(raw) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(body, ensure_ascii=ensure_ascii, allow_nan=True, default=marker)
    for n, value in enumerate(raw):
        text = text.replace(json.dumps(f"\x00raw{n}\x00"), value)
    return text


def form_value(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value)


@st.composite
def multipart(draw: st.DrawFn, body: dict[str, Any]) -> tuple[str, bytes]:
    """A multipart form of `body`'s fields, sometimes broken (boundary missing, wrong, cut)."""
    lines = b""
    for name, value in body.items():
        if name == "photos":
            for photo in value if isinstance(value, list) else []:
                data = base64.b64decode(photo) if isinstance(photo, str) else b""
                lines += (
                    b'--B0\r\nContent-Disposition: form-data; name="photo"; filename="p.png"\r\n'
                    b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"
                )
            continue
        head = f'--B0\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        lines += (
            head.encode("utf-8", "surrogatepass")
            + form_value(value).encode("utf-8", "surrogatepass")
            + b"\r\n"
        )
    data = lines + b"--B0--\r\n"
    breakage = draw(st.sampled_from(["none", "none", "no-boundary", "wrong-boundary", "cut"]))
    if breakage == "cut":
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    content_type = {
        "no-boundary": "multipart/form-data",
        "wrong-boundary": "multipart/form-data; boundary=other",
    }.get(breakage, "multipart/form-data; boundary=B0")
    return content_type, data


@st.composite
def encoded(draw: st.DrawFn, body: dict[str, Any], form: bool) -> tuple[str, bytes]:
    """(Content-Type, bytes) of `body`: JSON (as the API wants), mutated bytes, a form, or odd."""
    ways = ["urlencoded", "urlencoded", "multipart", "json", "odd"]
    if not form:
        ways = ["json", "json", "json", "json", "json", "bytes", "urlencoded", "multipart", "odd"]
    way = draw(st.sampled_from(ways))
    if way == "multipart":
        return draw(multipart(body))
    if way == "urlencoded":
        pairs = [(k, form_value(v)) for k, v in body.items()]
        data = urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()
        charset = draw(
            st.sampled_from(["", "", "; charset=utf-8", "; charset=latin-1", "; charset=nope"])
        )
        if draw(st.booleans()):
            data += draw(st.sampled_from([b"&x=%ff", b"\xff\xfe", b"&&=&", b"%"]))
        return "application/x-www-form-urlencoded" + charset, data
    text = dumps(body, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    if way == "bytes":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        junk = draw(st.binary(max_size=8))
        data = data[:at] + junk + data[at + draw(st.integers(min_value=0, max_value=4)) :]
    if way == "odd":
        kind = draw(st.sampled_from(ODD_TYPES))
        return kind, data
    return "application/json", data


def errors_logged(logs: list[Any], caplog: pytest.LogCaptureFixture) -> list[str]:
    """What must never be logged for a request: a crash, a failed handler, a traceback."""
    found = [str(e) for e in logs if e["event"] in NOT_LOGGED or "exc_info" in e]
    found += [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    return found


@pytest.fixture
async def site(open_journal, tmp_path) -> AsyncIterator[Site]:
    journal = await open_journal.open(handlers=handlers())
    for n in (1, 2):  # alert 1 for the API, 2 for the dashboard form
        alert = Alert("scope_used_without_cleaning", "scope:GIF-001", f"use {n}", f"use:{n}")
        await journal.run(lambda conn, a=alert: raise_alert(conn, a))
    serving = open_site(journal, tmp_path / "journal.db", tmp_path / "photos")
    yield await anext(serving)
    await serving.aclose()


async def send(
    site: Site, route: Route, content_type: str, data: bytes, csrf: str, caplog: Any
) -> tuple[int, str]:
    """Post one request; check what it answered and logged; return (status, event id or "")."""
    data = data.replace(CSRF.encode(), csrf.encode())
    headers = dict(AUTH) if route.kind == "api" else {}
    if content_type:
        headers["Content-Type"] = content_type
    caplog.clear()
    with capture_logs() as logs:
        response = await site.client.post(
            route.path, data=data, headers=headers, allow_redirects=False
        )
        text = await response.text()
    assert response.status < 500, text
    assert errors_logged(logs, caplog) == []
    if response.status == 201:
        return 201, json.loads(text)["event_id"]
    return response.status, ""


def assert_everything_answered_2xx_is_forwarded(site: Site, accepted: list[str]) -> None:
    journaled = {event_id for event_id, _ in site.events()}
    assert set(accepted) <= journaled
    assert site.failed_handlers() == []
    assert site.rows("SELECT id FROM alerts WHERE code = 'handler_failed'") == []


async def fuzz_once(
    site: Site, route: Route, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    """One drawn request to `route`: answered below 500, nothing crashed, any 2xx forwarded."""
    csrf = await site.login() if route.kind == "form" else ""
    body = data.draw(mutated(route), label="body")
    content_type, raw = data.draw(encoded(body, route.kind != "api"), label="encoded")
    _, event_id = await send(site, route, content_type, raw, csrf, caplog)
    assert_everything_answered_2xx_is_forwarded(site, [event_id] if event_id else [])


@st.composite
def one_field_changed(draw: st.DrawFn, route: Route) -> tuple[str, bytes]:
    """The route's valid body, as its clients send it, with one field's value at an edge."""
    body = copy.deepcopy(route.valid)
    *parents, last = draw(st.sampled_from(leaf_paths(body)))
    target: Any = body
    for key in parents:
        target = target[key]
    target[last] = draw(shaped_like(last, target[last]))
    if route.kind == "api":
        return "application/json", dumps(body).encode("utf-8", "surrogatepass")
    data = urlencode([(k, form_value(v)) for k, v in body.items()], errors="surrogatepass")
    return "application/x-www-form-urlencoded", data.encode()


async def one_value_at_its_edge(
    site: Site, route: Route, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    """One request as the route's clients send it, one value changed: refused or forwarded."""
    csrf = await site.login() if route.kind == "form" else ""
    content_type, raw = data.draw(one_field_changed(route), label="request")
    _, event_id = await send(site, route, content_type, raw, csrf, caplog)
    assert_everything_answered_2xx_is_forwarded(site, [event_id] if event_id else [])


@pytest.mark.parametrize("name", ROUTES)
@SHORT
@given(data=st.data())
async def test_one_value_at_its_edge_is_refused_or_forwarded(site, caplog, name, data):
    await one_value_at_its_edge(site, ROUTES[name], data, caplog)


@pytest.mark.slow
@pytest.mark.parametrize("name", ROUTES)
@LONG
@given(data=st.data())
async def test_many_values_at_their_edges_are_refused_or_forwarded(site, caplog, name, data):
    await one_value_at_its_edge(site, ROUTES[name], data, caplog)


@pytest.mark.parametrize("name", ROUTES)
@SHORT
@given(data=st.data())
async def test_fuzzed_requests_are_answered_and_what_is_taken_is_forwarded(
    site, caplog, name, data
):
    await fuzz_once(site, ROUTES[name], data, caplog)


@pytest.mark.slow
@pytest.mark.parametrize("name", ROUTES)
@LONG
@given(data=st.data())
async def test_many_fuzzed_requests_are_answered_and_what_is_taken_is_forwarded(
    site, caplog, name, data
):
    await fuzz_once(site, ROUTES[name], data, caplog)
