"""The IDCAS token chain against the simulator: one acquisition for many callers, the key fetched
again when the platform rotates it, and the synchronous calls bounded by webapi_timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.simulators.idcas_archive import IdcasArchiveSimulator, IdcasArchiveSimulatorConfig
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.idcas_archive.uplink import IdcasArchiveUplink
from agent.uplinks.kit.tokens import TokenError


@pytest.fixture
async def sim() -> AsyncIterator[IdcasArchiveSimulator]:
    simulator = IdcasArchiveSimulator(
        "idcas", IdcasArchiveSimulatorConfig(type="idcas_archive", port=0)
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


def uplink_for(sim: IdcasArchiveSimulator, **changes: Any) -> IdcasArchiveUplink:
    cfg = sim.config
    settings = {
        "type": "idcas_archive",
        "auth_url": f"{sim.url}/auth",
        "gateway_url": f"{sim.url}/api",
        "doc_gateway_url": f"{sim.url}/doc",
        "portal_url": sim.url,
        "org_code": "2470",
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
        "username": cfg.username,
        "password": cfg.password,
        "des_key": cfg.des_key,
        "md5_key": cfg.md5_key,
        "sev": sim.sev,
        "webapi_timeout": 0.5,
    }
    return IdcasArchiveUplink("idcas", IdcasArchiveConfig.model_validate(settings | changes))


async def test_many_callers_share_one_token_and_one_key(sim):
    uplink = uplink_for(sim)
    try:
        tokens = await asyncio.gather(*(uplink.tokens.get() for _ in range(20)))
        assert len(set(tokens)) == 1
        assert (sim.received.user_tokens_issued, sim.received.keys_served) == (1, 1)
        assert sim.received.tokens_issued == 2  # the client token and the user token
    finally:
        await uplink.close()


async def test_a_rotated_key_is_fetched_again_once(sim):
    uplink = uplink_for(sim)
    try:
        first = await uplink.tokens.get()
        sim.rotate_key()  # the key the agent holds no longer decrypts
        sim.expire_tokens()
        uplink.tokens.invalidate(first)
        assert await uplink.tokens.get() != first
        assert (sim.received.keys_served, sim.received.user_tokens_issued) == (2, 2)
        assert uplink.chain.keys_fetched == 2
        sim.faults.rotate_key_next = 1  # the control API's switch: rotated as the key is served
        uplink.chain._key = None
        uplink.tokens.invalidate()
        assert await uplink.tokens.get()
        assert sim.received.keys_served == 3 and sim.faults.rotate_key_next == 0
    finally:
        await uplink.close()


async def test_a_pinned_key_that_is_not_the_platforms_fails_with_a_token_error(sim):
    from Crypto.PublicKey import RSA

    from agent.crypto import rsa

    other = rsa.public_text(RSA.generate(1024))
    uplink = uplink_for(sim, rsa_public_key=other)
    try:
        with pytest.raises(
            TokenError, match="user token: connect/token answered HTTP 400: invalid_grant"
        ):
            await uplink.tokens.get()
        assert sim.received.keys_served == 0
    finally:
        await uplink.close()


async def test_a_slow_platform_gets_a_503_within_webapi_timeout(sim):
    uplink = uplink_for(sim)
    try:
        await uplink.tokens.get()
        sim.faults.delay = 5.0
        relayed = await uplink.call("all-exams", {"id_card_no": "1"})
        assert relayed.status == 503
        assert "no answer within webapi_timeout 0.5 s" in relayed.body["error"]
    finally:
        await uplink.close()


async def test_a_refusal_is_a_502_with_the_platforms_words(sim):
    uplink = uplink_for(sim)
    try:
        relayed = await uplink.call("exam-detail", {"id": 999})
        assert relayed.status == 502
        assert relayed.body["code"] == -1
        assert "the platform refused: code -1: 检查不存在" in relayed.body["error"]
    finally:
        await uplink.close()


async def test_a_relayed_recognition_query_is_counted_as_a_visit(sim):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from agent.endpoints import EMIT_KEY
    from agent.events import Event
    from agent.uplinks.idcas_archive.routes import api_routes
    from agent.uplinks.idcas_archive.statistics import RELAYED
    from tests.integration.test_idcas_e2e import WEBAPIS

    stats = {"enabled": True, "source": "relayed", "work_stations": 3}
    uplink = uplink_for(sim, statistics=stats)
    emitted: list[Event] = []

    async def emit(event: Event) -> bool:
        emitted.append(event)
        return True

    app = web.Application()
    app[EMIT_KEY] = emit
    for route in api_routes("idcas", uplink.config, uplink):
        app.router.add_route(route.method, route.path, route.handler)
    async with TestClient(TestServer(app)) as client:
        answer = await client.post("/api/v1/idcas/webapi/recognition", json=WEBAPIS["recognition"])
        assert answer.status == 200
        answer = await client.post("/api/v1/idcas/webapi/all-exams", json={"id_card_no": "1"})
        assert answer.status == 200
    await uplink.close()
    (event,) = emitted  # the recognition query only
    assert event.kind == RELAYED and event.payload["uplink"] == "idcas"
    assert WEBAPIS["recognition"]["visit_id"] not in str(event.payload)


def message(kind: str, payload: dict[str, Any]) -> Any:
    from agent.journal.outbox import OutboxMessage

    return OutboxMessage(1, "idcas", kind, "k", "k", payload, 1, 0.0, None)


async def test_the_outbox_messages_as_configured(sim):
    from agent.dispatch.outcomes import Delivered, Reject, Retry
    from agent.uplinks.idcas_archive.uplink import PRINT_FLAG, STATISTICS

    stats = {"enabled": True, "work_stations": 3, "date_field": "stat_date"}
    uplink = uplink_for(sim, bool_style="title", statistics=stats)
    await uplink.open()
    try:
        flag = {"print_type": "Result", "org_code": "2470", "business_id": "10001",
                "print_time": "2026-12-07 10:00:00", "client_host": "h", "client_name": "n",
                "cancel_flag": "true"}  # fmt: skip
        assert isinstance(await uplink.send(message(PRINT_FLAG, {"params": flag})), Delivered)
        assert sim.received.print_flags[0]["cancel_flag"] == "True"
        day = {"day": "2026-12-06", "patients_cnt": 7, "work_stations": 3}
        assert isinstance(await uplink.send(message(STATISTICS, day)), Delivered)
        (stats_body,) = sim.received.statistics
        assert (stats_body["stat_date"], stats_body["patients_cnt"]) == ("2026-12-06", 7)
        waiting = await uplink.send(message(STATISTICS, {**day, "patients_cnt": None}))
        assert isinstance(waiting, Retry) and waiting.deferred
        assert "waiting for HIS to post the counts" in waiting.reason
        refused = await uplink.send(message(PRINT_FLAG, {"params": {"org_code": "2470"}}))
        assert isinstance(refused, Reject) and "code -1" in refused.reason
        assert isinstance(await uplink.send(message("other", {})), Reject)
    finally:
        await uplink.close()


async def test_the_cli_prints_a_signed_url_that_opens(sim, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import aiohttp

    from agent import toml_out
    from tests.integration.test_idcas_e2e import PAGES

    settings = uplink_for(sim).config.model_dump(mode="json", exclude={"listener", "statistics"})
    for secret in ("client_secret", "password", "des_key", "md5_key", "sev"):
        settings[secret] = getattr(uplink_for(sim).config, secret).get_secret_value()
    settings.pop("page_sev")
    config = tmp_path / "agent.toml"
    body = {"agent": {"state_dir": str(tmp_path)}, "uplinks": {"idcas": settings}}
    config.write_text(toml_out.dumps(body), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for page in ("clinic-view", "h5-exam-detail"):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agent.cli", "idcas", "link", page, "-c", str(config)],
            input=json.dumps(PAGES[page]), capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        async with aiohttp.ClientSession() as http, http.get(done.stdout.strip()) as answer:
            assert answer.status == 200, await answer.text()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent.cli", "idcas", "link", "clinic-view", "-c", str(config)],
        input='{"work_no": "1"}', capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert done.returncode != 0 and "org_code: required" in done.stderr
