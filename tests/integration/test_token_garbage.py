"""A token endpoint answering garbage with HTTP 200 (a proxy's login page) does not hold messages
forever: every kit uplink with a token gives up after unreadable_answer_attempts, each message a
dead letter with the alert uplink_answer_unreadable. A token endpoint that answers its own
envelope with an error code (a wrong key) is still retried: every message would fail alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.dispatch.dispatcher import UNREADABLE_ALERT
from agent.dispatch.uplink import Uplink
from agent.events import Event
from agent.journal.writer import Journal
from agent.simulators.base import PORTAL
from agent.uplinks.http.uplink import HttpUplink, HttpUplinkConfig
from agent.uplinks.idcas_archive.uplink import PRINT_FLAG, IdcasArchiveUplink
from agent.uplinks.kit.answers import AnswerRules, token_envelope
from agent.uplinks.kit.tokens import TokenError
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from agent.uplinks.results_sharing.uplink import ResultsSharingUplink
from agent.uplinks.zhejiang_endoscope.examples import EXAMPLES
from agent.uplinks.zhejiang_endoscope.uplink import ZhejiangEndoscopeUplink
from drivers.dicom.forward import FORWARDING
from tests.dispatching import run_dispatcher
from tests.helpers import eventually
from tests.integration import test_remote_imaging as imaging
from tests.integration import test_results_sharing as sharing
from tests.integration import test_zhejiang_endoscope as zhejiang
from tests.integration.test_api_schema import IDCAS
from tests.integration.test_unreadable_answers import (
    ATTEMPTS,
    SETTINGS,
    Queue,
    alerts,
    dead,
    message,
)
from tests.unit.test_remote_imaging_codec import config_for

KINDS = ["http", "zhejiang_endoscope", "remote_imaging", "results_sharing", "idcas_archive"]


@asynccontextmanager
async def login_page() -> AsyncIterator[tuple[str, list[str]]]:
    """A server answering every request HTTP 200 with an HTML page; (its URL, paths asked)."""
    asked: list[str] = []

    async def page(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(text=PORTAL, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", asked
    finally:
        await runner.cleanup()


async def case(
    kind: str, url: str, open_journal: Any, tmp_path: Path
) -> tuple[Journal, Uplink, list[Event]]:
    """A journal, the uplink of `kind` whose token comes from `url`, and the events to send."""
    if kind == "results_sharing":
        journal = await sharing.open_agent(open_journal)
        up: Uplink = ResultsSharingUplink("sharing", sharing.sharing(url, tmp_path))
        return journal, up, [sharing.audited("E1")]
    journal = await open_journal.open(handlers=(Queue(),))
    if kind == "http":
        config = HttpUplinkConfig.model_validate(
            {"type": "http", "url": f"{url}/ingest", "token_url": f"{url}/token",
             "client_id": "edge", "client_secret": "secret"}
        )  # fmt: skip
        return journal, HttpUplink("bus", config), [message("bus", "synthetic", {"n": 1})]
    if kind == "zhejiang_endoscope":
        up = ZhejiangEndoscopeUplink("zj", zhejiang.uplink_config(url))
        return journal, up, [message("zj", "rinseWater", dict(EXAMPLES["rinseWater"]))]
    if kind == "remote_imaging":
        up = RemoteImagingUplink("city", config_for(base_url=f"{url}/openapi"), FORWARDING)
        return journal, up, [message("city", "exam.push", imaging.new_study())]
    config_idcas = IDCAS.model_copy(update={"auth_url": f"{url}/auth", "doc_gateway_url": url})
    flag = {"params": {"accession_number": "CT-1", "print_type": "Result"}}
    return journal, IdcasArchiveUplink("idcas", config_idcas), [message("idcas", PRINT_FLAG, flag)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_token_endpoint_answering_a_page_ends_as_a_dead_letter_with_an_alert(
    open_journal, tmp_path, kind
):
    async with login_page() as (url, asked):
        journal, uplink, events = await case(kind, url, open_journal, tmp_path)
        async with run_dispatcher(journal, uplink, SETTINGS):
            await journal.ingest(events)
            row = await eventually(lambda: dead(journal))
    assert row["attempts"] == ATTEMPTS
    assert row["last_error"].startswith(f"{ATTEMPTS} unreadable answers in a row")
    [(code, severity, _)] = await alerts(journal)
    assert (code, severity) == (UNREADABLE_ALERT, "error")
    assert len(asked) == ATTEMPTS  # one token request per attempt, then no more asking
    assert "Gateway login" not in row["last_error"]  # the page is not quoted as the reason


def test_a_refusing_token_envelope_is_no_unreadable_answer():
    rules = AnswerRules(code_key="code", message_key="msg", delivered_codes=frozenset({200}))
    with pytest.raises(TokenError) as refused:
        token_envelope(rules, 200, '{"code": 401, "msg": "签名错误"}', "token")
    assert not refused.value.unreadable  # retried without end: the config must be fixed
    with pytest.raises(TokenError) as page:
        token_envelope(rules, 200, PORTAL, "token")
    assert page.value.unreadable
    with pytest.raises(TokenError) as down:
        token_envelope(rules, 503, PORTAL, "token")
    assert not down.value.unreadable  # a 5xx is the platform being down, not garbage
