"""One local API with every route (API, quality, exams, dashboard) on a real journal, for tests."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agent.config import ApiSection
from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.alerts import Acknowledgements
from agent.journal.writer import Journal
from agent.observe import Snapshot
from agent.reprocessing.config import QualityConfig
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.quality import QualityHandler
from agent.web.api import make_app
from agent.web.dashboard.routes import add_dashboard_routes
from agent.web.guard import runner_options
from tests.unit.test_compliance import opa_config

TOKEN = "harness-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1024 * 1024  # the default


@dataclass
class Site:
    """The running app, its journal, and what was answered."""

    client: TestClient[Any, Any]
    journal: Journal
    database: Path

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query on the journal database (read directly, committed data only)."""
        with sqlite3.connect(self.database) as conn:
            return conn.execute(sql).fetchall()

    def events(self) -> list[tuple[str, str]]:
        """(id, kind) of every journaled event."""
        return [(i, k) for i, k in self.rows("SELECT id, kind FROM events ORDER BY rowid")]

    def failed_handlers(self) -> list[tuple[Any, ...]]:
        """Every handler failure row (a 2xx whose record was not produced)."""
        return self.rows("SELECT event_id, handler, error FROM handler_failures")

    async def login(self) -> str:
        """Log in with the token; return the session's CSRF token."""
        response = await self.client.post("/login", data={"token": TOKEN, "next": "/"})
        assert response.status == 200, await response.text()
        found = re.search(r'<meta name="csrf-token" content="([^"]*)">', await response.text())
        assert found is not None
        return found[1]


class AgentServer(TestServer):
    """A test server whose runner is made as the agent makes its own (runtime.py)."""

    async def _make_runner(self, **_: Any) -> web.AppRunner:
        return web.AppRunner(self.app, **runner_options())


def handlers() -> tuple[Any, ...]:
    """Every domain handler the local API's events reach."""
    config = opa_config()
    return (
        ReprocessingHandler("endo", config),
        QualityHandler("q", config, QualityConfig()),
        ImagingHandler("imaging", ImagingConfig.model_validate({"type": "imaging"})),
        Acknowledgements(),
    )


async def open_site(journal: Journal, database: Path, photos: Path) -> AsyncGenerator[Site, None]:
    """Serve the whole local API and dashboard from `journal` until the generator is closed."""

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    async def observe() -> Snapshot:
        return Snapshot(True, "", [], [], {}, 0)

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=MAX_BODY)
    app = make_app(settings, emit, journal.run, photos_dir=photos, observe=observe)
    add_dashboard_routes(
        app,
        token=SecretStr(TOKEN),
        observe=observe,
        query=journal.run,
        database=database,
        read_only_open=False,
        reprocessing=[opa_config()],
        interval=0.05,
    )
    async with TestClient(AgentServer(app)) as client:
        yield Site(client, journal, database)
