"""The web dashboard on a real journal: login, sessions, CSRF, pages, masking, actions, SSE."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.config import ApiSection
from agent.journal.alerts import Acknowledgements, Alert, raise_alert
from agent.observe import QueueState, Snapshot, SourceState
from agent.reprocessing.config import QualityConfig
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.quality import QualityHandler
from agent.web.api import make_app
from agent.web.dashboard.pages import PAGES as DASHBOARD_PAGES
from agent.web.dashboard.routes import add_dashboard_routes
from agent.web.dashboard.sessions import COOKIE, FAILURE_WINDOW, MAX_FAILURES
from tests.unit.test_compliance import Checked, opa_config

TOKEN = "dashboard-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGES = {
    "/": "内镜",
    "/alerts": "警报",
    "/devices": "设备",
    "/uplinks": "上传",
    "/dead-letters": "死信",
    "/studies": "影像",
    "/quality": "质量记录",
}
ClientFactory = Callable[..., Any]


@pytest.fixture
async def centre(open_journal, tmp_path) -> Checked:
    config = opa_config()
    handlers = (
        ReprocessingHandler("endo", config),
        QualityHandler("q", config, QualityConfig()),
        Acknowledgements(),
    )
    journal = await open_journal.open(handlers=handlers)
    return Checked(journal, tmp_path / "journal.db")


def snapshot() -> Snapshot:
    """A fixed agent snapshot: one reader with counters, one uplink with a dead letter."""
    queue = QueueState("zj", {"pending": 2, "dead": 1}, 12.0, "open", 5, 3, 1)
    reader = SourceState("R1", "rfid_reader", "running", False, {"taps": 7, "bad_checksum": 2})
    return Snapshot(True, "", [queue], [reader], {"critical": 1}, 42)


@pytest.fixture
async def make_client(centre) -> AsyncIterator[ClientFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def emit(event):
        return (await centre.journal.ingest([event]))[0]

    async def observe() -> Snapshot:
        return snapshot()

    async def factory(read_only_open: bool = False) -> TestClient[Any, Any]:
        settings = ApiSection(enabled=True, token=SecretStr(TOKEN))
        app = make_app(settings, emit, centre.journal.run, photos_dir=centre.path.parent / "p")
        add_dashboard_routes(
            app,
            token=SecretStr(TOKEN),
            observe=observe,
            query=centre.journal.run,
            database=centre.path,
            read_only_open=read_only_open,
            reprocessing=[opa_config()],
            interval=0.05,
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


async def login(client: TestClient[Any, Any]) -> str:
    """Log in with the token; return the CSRF token the pages carry."""
    response = await client.post("/login", data={"token": TOKEN, "next": "/"})
    assert response.status == 200, await response.text()
    return csrf_of(await response.text())


def csrf_of(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', page)
    assert found is not None
    return found[1]


def logout_cookies(client: TestClient[Any, Any]) -> None:
    client.session.cookie_jar.clear()


async def test_login_sets_a_random_session_cookie_not_the_token(make_client):
    client = await make_client()
    response = await client.post(
        "/login", data={"token": TOKEN, "next": "/alerts"}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/alerts"
    cookie = response.cookies[COOKIE]
    assert TOKEN not in cookie.value and len(cookie.value) >= 40
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert TOKEN not in str(response.headers)
    page = await client.get("/alerts")
    assert page.status == 200 and csrf_of(await page.text())


@pytest.mark.parametrize("given", ["wrong", TOKEN[:-1], ""])
async def test_a_wrong_token_is_refused_and_logged_without_it(make_client, given):
    client = await make_client()
    with capture_logs() as logs:
        response = await client.post("/login", data={"token": given}, allow_redirects=False)
    assert response.status == 401 and COOKIE not in response.cookies
    assert [entry["event"] for entry in logs] == ["dashboard.login_refused"]
    assert (given or "token=") not in str(logs) and TOKEN not in str(logs)
    assert "令牌错误" in await response.text()


async def test_an_open_redirect_after_login_is_not_possible(make_client):
    client = await make_client()
    for target in ("//evil.example/", "https://evil.example/", "\\\\evil"):
        response = await client.post(
            "/login", data={"token": TOKEN, "next": target}, allow_redirects=False
        )
        assert response.headers["Location"] == "/"


async def test_pages_need_a_login_unless_read_only_is_open(make_client, centre):
    await centre.run_cycle(R5=120)
    closed = await make_client(read_only_open=False)
    for path in PAGES:
        response = await closed.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login")
    async with closed.get("/events?page=endoscopes") as stream:  # the page goes to the login
        assert stream.status == 200 and "event: login" in await stream.text()
    await login(closed)
    opened = await make_client(read_only_open=True)
    for client in (closed, opened):
        for path, title in PAGES.items():
            response = await client.get(path)
            text = await response.text()
            assert response.status == 200 and title in text, path
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert "<script>" not in text and "style=" not in text  # nothing inline: CSP holds
    anonymous = await (await opened.get("/alerts")).text()
    assert "/acknowledge" not in anonymous and "/override" not in anonymous  # no forms
    assert (await opened.get("/dead-letters/1", allow_redirects=False)).status == 303


async def test_each_page_shows_what_the_agent_knows(make_client, centre):
    await centre.run_cycle(R5=120)  # GIF-001 blocked: OPA too short
    client = await make_client()
    await login(client)
    home = await (await client.get("/")).text()
    assert 'id="scope-GIF-001"' in home and 'data-status="blocked"' in home
    assert "禁用" in home and "BLOCKED" in home and "不合格" in home
    assert 'id="scope-CF-002"' in home and "无记录" in home  # configured, never reprocessed
    devices = await (await client.get("/devices")).text()
    assert "R1" in devices and "离线" in devices and "校验和错误" in devices  # bad_checksum
    assert "RFID 读卡器" in devices
    assert "Asia/Shanghai UTC+08:00" in devices  # the zone every time on the page is in
    uplinks = await (await client.get("/uplinks")).text()
    assert "熔断" in uplinks and "OPEN" in uplinks
    alerts = await (await client.get("/alerts")).text()
    assert "ws507.contact_time" in alerts and 'action="/scopes/GIF-001/override"' in alerts
    quality = await (await client.get("/quality")).text()
    assert 'data-api="/api/v1/quality/rinse-water"' in quality


async def test_the_current_step_is_timed_against_the_rules_target(make_client, centre):
    await centre.tap("R1", "00D507D0")
    for reader in ("R2", "R3", "R4", "R5"):
        await centre.tap(reader, "00D507D0", after=60)
    client = await make_client()
    await login(client)
    home = await (await client.get("/")).text()
    card = home[home.index('id="scope-GIF-001"') :]
    assert 'data-status="progress"' in card and "消毒" in card
    assert '<span class="target">5:00</span>' in card  # OPA: 5 min (WS 507 附录B)
    assert "已达标" in card  # the fixture's clock is long past


async def test_patients_are_masked_on_the_endoscopes_page(make_client, centre):
    await centre.run_cycle()
    client = await make_client(read_only_open=True)
    body = {"reader_id": "R9", "patient_id": "HIS0042", "patient_name": "张三"}
    assert (await client.post("/api/v1/patients", json=body, headers=AUTH)).status == 201
    await centre.tap("R9", "00D507D0", after=600)
    home = await (await client.get("/")).text()
    assert "张*" in home and "****042" in home and "HIS0042" not in home
    assert "张三" not in home and "HIS0042" not in home
    assert 'data-status="dirty"' in home  # used: to be reprocessed


async def test_acknowledge_needs_a_session_and_its_csrf_token(make_client, centre):
    await centre.run_cycle(R5=120)
    alert_id = centre_alert_id(centre)
    client = await make_client(read_only_open=True)
    url = f"/alerts/{alert_id}/acknowledge"
    with capture_logs() as logs:
        response = await client.post(url, data={"by": "王护士"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert logs[0]["event"] == "dashboard.refused"
    csrf = await login(client)
    response = await client.post(url, data={"by": "王护士", "csrf": "nope"}, allow_redirects=False)
    assert response.status == 403
    assert open_alert_ids(centre) == [alert_id]
    response = await client.post(url, data={"csrf": csrf, "by": " "}, allow_redirects=False)
    assert response.status == 422 and "by:" in await response.text()
    response = await client.post(
        url, data={"csrf": csrf, "by": "王护士", "note": "重新浸泡"}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/alerts?done=acknowledged"
    assert open_alert_ids(centre) == []
    with sqlite3.connect(centre.path) as conn:
        kind, source = conn.execute(
            "SELECT kind, source FROM events WHERE kind = 'alert.acknowledge'"
        ).fetchone()
    assert (kind, source) == ("alert.acknowledge", "dashboard")
    again = await client.post(url, data={"csrf": csrf, "by": "x"}, allow_redirects=False)
    assert again.status == 409


async def test_the_same_alert_raised_again_is_one_card_acknowledged_at_once(make_client, centre):
    older = Alert("scope_blocked_used", "scope:GIF-007", "used although blocked", "use:1")
    await centre.journal.run(lambda conn: raise_alert(conn, older))  # critical, and the oldest
    for _ in range(3):  # the same violation, cycle after cycle
        await centre.run_cycle(R5=120)
    client = await make_client()
    csrf = await login(client)
    page = await (await client.get("/alerts")).text()
    cards = re.findall(
        r'<article class="alert sev-(\w+)" id="alert-(\d+)"[^>]*data-count="(\d+)"', page
    )
    assert [(severity, count) for severity, _, count in cards] == [
        ("critical", "1"),
        ("error", "3"),
    ]
    assert "禁用内镜被使用" in page and "WS 507 消毒/灭菌时间不足" in page  # Chinese first
    assert "全部确认 (3)" in page and "×3" in page
    grouped = cards[1][1]
    response = await client.post(
        f"/alerts/{grouped}/acknowledge",
        data={"csrf": csrf, "by": "王护士", "group": "true"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert open_alert_ids(centre) == [int(cards[0][1])]  # the three together; the critical stays


async def test_ticked_alerts_are_acknowledged_at_once(make_client, centre):
    for n in (1, 2, 3):
        alert = Alert("dicom_rejected", f"dicom:pacs{n}", "refused", f"o:{n}", "error")
        await centre.journal.run(lambda conn, a=alert: raise_alert(conn, a))
    client = await make_client()
    csrf = await login(client)
    page = await (await client.get("/alerts")).text()
    assert 'form="bulk-ack"' in page and "确认所选" in page
    first, second, third = open_alert_ids(centre)
    form = {"csrf": csrf, "by": "王护士", f"alert-{first}": "1", f"alert-{third}": "1"}
    response = await client.post("/alerts/acknowledge", data=form, allow_redirects=False)
    assert response.status == 303
    assert open_alert_ids(centre) == [second]
    nothing = await client.post(
        "/alerts/acknowledge", data={"csrf": csrf, "by": "王护士"}, allow_redirects=False
    )
    assert nothing.status == 422  # none ticked


async def test_override_needs_a_session_and_its_csrf_token(make_client, centre):
    await centre.run_cycle(R5=120)
    client = await make_client()
    url = "/scopes/GIF-001/override"
    body = {"by": "护士长 李", "reason": "soaked again by hand"}
    assert (await client.post(url, data=body, allow_redirects=False)).status == 303
    csrf = await login(client)
    assert (await client.post(url, data=body, allow_redirects=False)).status == 403
    assert centre.scope()["blocked"]
    response = await client.post(url, data={**body, "csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert not centre.scope()["blocked"] and centre.scope()["override"]["by"] == "护士长 李"


async def test_dead_letters_are_retried_and_discarded_with_an_audit_trail(make_client, centre):
    first, second = [await dead_letter(centre, n) for n in (1, 2)]
    client = await make_client(read_only_open=True)
    listing = await (await client.get("/dead-letters")).text()
    assert f'id="message-{first}"' in listing and "HTTP 422" not in listing  # reason: login
    for action in ("retry", "discard"):
        url = f"/dead-letters/{first}/{action}"
        response = await client.post(url, data={"by": "it"}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/login"
    csrf = await login(client)
    assert (await client.post(f"/dead-letters/{first}/retry", data={"by": "it"})).status == 403
    detail = await (await client.get(f"/dead-letters/{first}")).text()
    assert "HTTP 422: missing field" in detail and "&quot;n&quot;: 1" in detail  # escaped
    response = await client.post(
        f"/dead-letters/{first}/retry", data={"by": "张工", "csrf": csrf}, allow_redirects=False
    )
    assert response.headers["Location"] == "/dead-letters?done=retried"
    no_reason = await client.post(
        f"/dead-letters/{second}/discard", data={"by": "张工", "csrf": csrf}
    )
    assert no_reason.status == 422
    response = await client.post(
        f"/dead-letters/{second}/discard",
        data={"by": "张工", "reason": "duplicate of 1", "csrf": csrf},
        allow_redirects=False,
    )
    assert response.status == 303
    with sqlite3.connect(centre.path) as conn:
        states = dict(conn.execute("SELECT id, state FROM outbox WHERE uplink = 'zj-test'"))
        audit = conn.execute("SELECT actor, action, target FROM audit ORDER BY id").fetchall()
    assert states == {first: "pending", second: "discarded"}
    assert audit == [
        ("dashboard:张工", "outbox.retry", f"outbox:{first}"),
        ("dashboard:张工", "outbox.discard", f"outbox:{second}"),
    ]
    gone = await client.post(f"/dead-letters/{second}/retry", data={"by": "x", "csrf": csrf})
    assert gone.status == 409


async def test_the_api_takes_the_session_cookie_only_with_the_csrf_header(make_client, centre):
    client = await make_client()
    url = "/api/v1/quality/rinse-water"

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        for key, value in (("device", "WTE-01"), ("status", "normal"), ("recorded_by", "李")):
            data.add_field(key, value)
        return data

    assert (await client.post(url, data=form())).status == 401
    csrf = await login(client)
    with capture_logs() as logs:
        refused = await client.post(url, data=form())
    assert refused.status == 401 and COOKIE not in str(logs)
    assert csrf not in str(logs)
    ok = await client.post(url, data=form(), headers={"X-CSRF-Token": csrf})
    assert ok.status == 201, await ok.text()
    assert (await client.get("/api/v1/alerts")).status == 200  # a read needs no CSRF
    # A wrong Bearer token is refused even with a valid session: no mixing of the two.
    wrong = {"Authorization": "Bearer nope", "X-CSRF-Token": csrf}
    assert (await client.post(url, data=form(), headers=wrong)).status == 401
    quality = await (await client.get("/quality")).text()
    assert "WTE-01" in quality


async def test_logout_ends_the_session(make_client):
    client = await make_client()
    csrf = await login(client)
    response = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_the_live_stream_sends_a_new_fragment_after_a_tap(make_client, centre):
    await centre.run_cycle()
    client = await make_client()
    await login(client)
    async with client.get("/events?page=endoscopes") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first = await next_fragment(stream)
        assert 'id="scope-CF-002" data-status="none"' in first.replace("\n", "")
        await centre.tap("R1", "00AABBCC", after=5)
        update = await next_fragment(stream)
        while 'id="scope-CF-002" data-status="none"' in update:
            update = await next_fragment(stream)
    card = update[update.index('id="scope-CF-002"') :]
    assert 'data-status="progress"' in card and "Pre-clean" in card


async def next_fragment(stream: aiohttp.ClientResponse) -> str:
    """The html of the next `fragment` event on an SSE stream."""
    event = ""
    async with asyncio.timeout(5):
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "fragment":
                return str(json.loads(line.removeprefix("data: "))["html"])


def centre_alert_id(centre: Checked) -> int:
    ids = open_alert_ids(centre)
    assert ids
    return ids[0]


def open_alert_ids(centre: Checked) -> list[int]:
    with sqlite3.connect(centre.path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM alerts WHERE acknowledged_at IS NULL")]


async def dead_letter(centre: Checked, n: int) -> int:
    """A message the platform refused for good, as the dispatcher leaves it."""

    def insert(conn: sqlite3.Connection) -> int:
        now = time.time()
        cursor = conn.execute(
            "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, state, attempts,"
            " created_at, next_attempt_at, settled_at, last_error, response)"
            " VALUES ('zj-test', 'uploadReadData', 'k', ?, ?, 'dead', 1, ?, ?, ?, ?, ?)",
            (f"d{n}", json.dumps({"n": n}), now, now, now, "HTTP 422: missing field", "{}"),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    return int(await centre.journal.run(insert))


async def test_guessing_the_token_is_throttled_per_address(make_client):
    client = await make_client()
    for _ in range(MAX_FAILURES):
        response = await client.post("/login", data={"token": "guess"}, allow_redirects=False)
        assert response.status == 401
    with capture_logs() as logs:
        response = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 429 and COOKIE not in response.cookies
    assert 0 < int(response.headers["Retry-After"]) <= FAILURE_WINDOW
    assert "too many wrong tokens" in await response.text()
    assert [entry["event"] for entry in logs] == ["dashboard.login_throttled"]


IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:-]*[0-9][A-Za-z0-9_.:-]*\s+")
CONFIG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Labels(HTMLParser):
    """The text of every heading, table header, label, button, option and legend of a page."""

    TAGS = frozenset({"h1", "h2", "h3", "th", "label", "button", "option", "legend", "summary"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, list[str]]] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.TAGS:
            self.open.append((tag, []))

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1][0] == tag:
            _, parts = self.open.pop()
            self.found.append(" ".join("".join(parts).split()))

    def handle_data(self, data: str) -> None:
        if self.open:
            self.open[-1][1].append(data)


async def test_every_label_on_every_page_reads_in_chinese_first(make_client, centre):
    await centre.run_cycle(R5=120)
    client = await make_client()
    await login(client)
    untranslated = {}
    for page in DASHBOARD_PAGES.values():
        labels = _Labels()
        labels.feed(await (await client.get(page.path)).text())
        # Names the hospital gave (a scope's number, an uplink's config name) are not words to
        # translate: a leading token with a digit, or a lone lower-case config name, is skipped.
        texts = [IDENTIFIER.sub("", t, count=1) for t in labels.found]
        words = [t for t in texts if re.search(r"[A-Za-z]{2}", t) and not CONFIG_NAME.match(t)]
        missing = [t for t in words if not re.match(r"^[^A-Za-z]*[\u4e00-\u9fff]", t)]
        if missing:
            untranslated[page.path] = missing
    assert untranslated == {}
