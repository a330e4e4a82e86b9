"""The platform simulators' control API: each switch seen by the real uplinks, and state kept."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from agent.plugins import SIMULATORS
from agent.runtime import build
from agent.simulators.base import SimulatedCloud
from agent.simulators.control import ControlServer
from agent.simulators.remote_imaging import KEY_FILE, RemoteImagingSimulator
from agent.simulators.remote_imaging import build as build_remote
from tests.dispatching import outbox_rows
from tests.helpers import eventually
from tests.integration import test_remote_imaging as imaging
from tests.integration import test_zhejiang_endoscope as zhejiang
from tests.simulator_process import SimulatorProcess

Call = Callable[..., Awaitable[Any]]


@asynccontextmanager
async def control_of(simulator: SimulatedCloud[Any]) -> AsyncIterator[Call]:
    """The simulator's control API on a free loopback port, and a caller: (method, path, body)."""
    server = ControlServer(simulator, "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
                async with session.request(method, server.url + path, json=body) as resp:
                    assert resp.status == status, await resp.text()
                    return await resp.json()

            yield call
    finally:
        await server.stop()


def verdicts(found: dict[str, Any]) -> list[tuple[str, Any, str]]:
    return [(a["verdict"], a["code"], a["message"]) for a in found["received"]]


async def test_zhejiang_busy_and_error_codes_are_switched_on_and_listed(
    open_journal, zhejiang_platform
):
    journal = await zhejiang.journal_with(open_journal)
    uplink = zhejiang.Observed(zhejiang.uplink_config(zhejiang_platform.base_url))
    error = "参数校验失败：测试用的错误"
    async with control_of(zhejiang_platform) as control:
        switches = {"busy_next": 1, "error_next": 1, "error_code": 400, "error_msg": error}
        assert (await control("POST", "/faults", switches))["error_next"] == 1
        async with zhejiang.dispatching(journal, uplink):
            await journal.ingest([zhejiang.record("sterProcess")])
            [row] = (await eventually(lambda: zhejiang.settled(journal, "dead"))).values()
        assert error in row["last_error"]
        found = await control("GET", "/received?kind=sterProcess")
        assert verdicts(found) == [
            ("refused", 503, "系统繁忙，请稍后重试"),
            ("refused", 400, error),
        ]
        assert found["received"][0]["body"]["accessToken"]  # the form, as sent
        tokens = await control("GET", "/received?kind=getAccessToken&verdict=accepted")
        assert len(tokens["received"]) == 1
        assert tokens["received"][0]["body"]["accessSecret"] == "***"


async def test_zhejiang_timeouts_malformed_answers_and_token_expiry(
    open_journal, zhejiang_platform
):
    journal = await zhejiang.journal_with(open_journal)
    config = zhejiang.uplink_config(zhejiang_platform.base_url, request_timeout=0.2)
    uplink = zhejiang.Observed(config)
    async with control_of(zhejiang_platform) as control, zhejiang.dispatching(journal, uplink):
        await control("POST", "/faults", {"hang_next": 1, "garble_next": 1})
        await journal.ingest([zhejiang.record("rinseWater")])
        await eventually(lambda: zhejiang.settled(journal))
        await control("POST", "/tokens/expire")
        await journal.ingest([zhejiang.record("rinseWater", key="scope-2")])
        await eventually(lambda: _two_delivered(journal))
        found = verdicts(await control("GET", "/received?kind=rinseWater"))
    assert found == [
        ("dropped", None, "no answer: the client gave up"),
        ("failed", 200, "malformed answer (not JSON)"),
        ("accepted", 200, "上传成功"),
        ("refused", 401, "token无效或已过期"),
        ("accepted", 200, "上传成功"),
    ]
    assert zhejiang_platform.received.tokens_issued == 2


async def _two_delivered(journal: Any) -> dict[str, dict[str, Any]]:
    found = await outbox_rows(journal)
    done = len(found) == 2 and all(r["state"] == "delivered" for r in found.values())
    return found if done else {}


async def test_remote_imaging_unavailable_answers_503_and_c_store_a700(open_journal, tmp_path):
    journal = await imaging.journal_with(open_journal)
    async with imaging.city_platform() as platform, control_of(platform) as control:
        uplink = imaging.Observed(imaging.uplink_config(platform))
        study = imaging.new_study()
        one = imaging.instance(imaging.write_instance(tmp_path, study["study"]), study["study"])
        async with imaging.dispatching(journal, uplink):
            await journal.ingest([imaging.push(study)])
            await eventually(lambda: _accepted(control, "push"))
            assert (await control("POST", "/down", {"mode": "unavailable"}))[
                "down"
            ] == "unavailable"
            await journal.ingest([one])
            await eventually(lambda: imaging._retried(uplink, 2))
            await control("POST", "/up")
            await eventually(lambda: imaging.settled(journal, one))
        stores = verdicts(await control("GET", "/received?kind=C-STORE"))
    assert stores[0] == ("refused", 0xA700, "down (unavailable)")
    assert stores[-1] == ("accepted", 0, "")
    assert set(stores[:-1]) == {("refused", 0xA700, "down (unavailable)")}


async def _accepted(control: Call, kind: str) -> bool:
    found = await control("GET", f"/received?kind={kind}&verdict=accepted")
    return bool(found["received"])


async def test_control_refuses_what_it_cannot_do(zhejiang_platform):
    async with control_of(zhejiang_platform) as control:
        assert "mode" in (await control("POST", "/down", {"mode": "sideways"}, status=400))["error"]
        wrong = await control("POST", "/faults", {"busy_next": "2", "nope": 1}, status=400)
        assert wrong["error"] == 'nope: no such switch; busy_next: expected int, got "2"'
        assert "busy_next" in wrong["switches"]
        assert (await control("GET", "/faults"))["busy_next"] == 0  # all or nothing
        assert "verdict" in (await control("GET", "/received?verdict=maybe", status=400))["error"]
        status = await control("GET", "")
        assert status["name"] == "platform" and status["down"] is None


async def test_remote_imaging_keeps_key_tokens_and_pushed_studies_across_a_restart(
    open_journal, tmp_path
):
    """A restarted platform with a state folder: same key, the agent's token and push still hold."""
    state = tmp_path / "city-state"
    settings = {"private_key": None, "port": 0, "dicom_port": 0}
    async with imaging.city_platform() as template:
        config = template.config.model_copy(update=settings)
    first = build_remote("city", config, state)
    await first.start()
    journal = await imaging.journal_with(open_journal)
    study = imaging.new_study()
    one = imaging.instance(imaging.write_instance(tmp_path, study["study"]), study["study"])
    restarted: RemoteImagingSimulator | None = None
    try:
        ports = {"port": first.port, "dicom_port": first.dicom_port}
        uplink = imaging.Observed(
            imaging.uplink_config(first, public_key=first.public_key, dicom_port=first.dicom_port)
        )
        async with imaging.dispatching(journal, uplink):
            pushed = imaging.push(study)
            await journal.ingest([pushed])
            await eventually(lambda: imaging.state_of(journal, pushed, "delivered"))
            await first.stop()
            restarted = build_remote("city", config.model_copy(update=ports), state)
            assert restarted.public_key == first.public_key
            await restarted.start()
            await journal.ingest([one])
            await eventually(lambda: imaging.settled(journal, one))
        assert restarted.received.tokens_issued == 0  # the token from before still works
        assert list(restarted.received.instances) == [one.payload["sop_uid"]]
        kinds = [a.kind for a in restarted.ledger.arrivals]
        assert kinds == ["getToken", "push", "C-STORE"]
    finally:
        await first.stop()
        if restarted is not None:
            await restarted.stop()
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600


async def test_simulate_remote_imaging_keeps_its_key_in_the_state_dir(tmp_path: Path):
    keys = []
    for state in (tmp_path / "kept", tmp_path / "kept", None):
        extra = [f"--state-dir={state}"] if state else []
        simulator = SimulatorProcess("remote-imaging", "--dicom-port=0", *extra)
        try:
            await simulator.start()
        finally:
            await simulator.kill()
        printed = "".join(simulator.lines)
        keys.append(printed[printed.index("-----BEGIN") : printed.index("-----END")])
    assert keys[0] == keys[1] != keys[2]


async def test_a_simulator_the_agent_serves_has_its_control_api_when_configured():
    section = {"type": "http_cloud", "port": 0, "control_port": 0}
    config = SIMULATORS["http_cloud"].model.model_validate(section)
    simulator = build(SIMULATORS, "test_cloud", config)
    await simulator.start()
    try:
        [server] = simulator.companions
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.url}/down", json={"mode": "unavailable"}) as resp:
                assert (await resp.json())["down"] == "unavailable"
            async with session.post(f"{simulator.url}/ingest", json={}) as resp:
                assert resp.status == 503
    finally:
        await simulator.stop()
    plain = {"type": "http_cloud", "port": 0}
    unserved = build(SIMULATORS, "c", SIMULATORS["http_cloud"].model.model_validate(plain))
    assert unserved.companions == []
