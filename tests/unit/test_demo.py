"""`edge-agent demo`'s parts: the generated config, the washer's receipt, the outage window."""

from __future__ import annotations

import asyncio
import tomllib
import webbrowser
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from Crypto.PublicKey import RSA

from agent.config import load_config
from agent.demo import BASE, WASHER, WASHER_SCOPE, _open_when_up, demo_config, moved_ports
from agent.plugins import PLUGIN_KINDS
from agent.simulators.base import Faults
from agent.simulators.demo_traffic import PROGRAMME, _nth_accession, receipt, study
from agent.simulators.zhejiang_endoscope import (
    ZhejiangEndoscopeSimulator,
    ZhejiangEndoscopeSimulatorConfig,
)
from agent.toml_out import dumps
from drivers.washer.formats import thermal_cn
from drivers.washer.receipt import decode

SHANGHAI = ZoneInfo("Asia/Shanghai")
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nnot checked here\n-----END PUBLIC KEY-----"


@pytest.mark.parametrize(
    ("elapsed", "down"),
    [(0.0, False), (9.99, False), (10.0, True), (29.99, True), (30.0, False), (1e6, False)],
)
def test_the_outage_window_is_half_open(elapsed, down):
    assert Faults(outage_after=10.0, outage_for=20.0).in_outage(elapsed) is down


def test_no_outage_by_default():
    assert not any(Faults().in_outage(t) for t in (0.0, 1.0, 1e6))


async def test_the_zhejiang_platform_answers_503_during_its_outage_only():
    config = ZhejiangEndoscopeSimulatorConfig(
        type="zhejiang_endoscope", port=0, outage_after=0.3, outage_for=0.4
    )
    simulator = ZhejiangEndoscopeSimulator("zj", config)
    await simulator.start()
    url = f"{simulator.base_url}/endoscope/uploadReadData"
    statuses = []
    try:
        async with aiohttp.ClientSession() as http:
            for wait in (0.0, 0.45, 0.5):  # before, during, after (0, ~0.45, ~0.95 s)
                await asyncio.sleep(wait)
                async with http.post(url, data={"timestamp": "x"}) as response:
                    statuses.append(response.status)
    finally:
        await simulator.stop()
    assert statuses == [200, 503, 200]  # 200: the platform's own JSON answer (a refusal here)


def test_the_generated_config_loads_and_moves_every_port(tmp_path):
    base = tomllib.loads(BASE.read_text(encoding="utf-8"))
    data = moved_ports(demo_config(base, tmp_path, PUBLIC_KEY, speed=2.0), 100)
    text = dumps(data)
    assert tomllib.loads(text) == data  # the writer round-trips, arrays of tables included
    ports = [
        data["api"]["port"],
        data["sources"]["pacs_in"]["port"],
        data["simulators"]["city_imaging"]["dicom_port"],
        data["simulators"]["demo_traffic"]["scp_port"],
        *(r["port"] for r in data["simulators"]["station_readers"]["readers"]),
    ]
    assert ports[:4] == [8870, 11212, 11213, 11212] and ports[4:] == list(range(9201, 9211))
    assert data["uplinks"]["zhejiang_endoscope"]["base_url"] == "http://127.0.0.1:8890/openapi"
    assert data["simulators"]["demo_traffic"]["api_url"] == "http://127.0.0.1:8870"
    assert data["sources"]["machine_wash"]["url"] == "tcp://127.0.0.1:9210"
    rules = data["domains"]["endoscopy"]["rules"]
    assert rules["contact_minutes"] == {"opa": 0.05}  # the demo's minimum at double speed
    assert data["simulators"]["zhejiang_platform"]["outage_after"] == 17.5
    taps = [(t["reader"], t["tag"]) for t in data["simulators"]["station_readers"]["script"]]
    washer_tag = next(e["rfid"] for e in data["domains"]["endoscopy"]["endoscopes"][2:])
    into, stored = taps.index(("machine_wash", washer_tag)), taps.index(("cabinet", washer_tag))
    assert into < stored - 10  # the washer's programme runs while other scopes are played

    # The public key above is a placeholder: load the config with a real one.
    key = RSA.generate(1024)
    (tmp_path / "city-imaging-private.pem").write_bytes(key.export_key())
    data["uplinks"]["city_imaging"]["public_key"] = key.public_key().export_key().decode()
    path = tmp_path / "demo.toml"
    path.write_text(dumps(data), encoding="utf-8")
    config = load_config(path, PLUGIN_KINDS)
    assert set(config.simulators) >= {"zhejiang_platform", "city_imaging", "demo_traffic"}
    assert {"pacs_in", "aer", "machine_wash"} <= set(config.sources)


def test_the_washer_receipt_parses_as_thermal_cn_with_the_phases_just_run():
    start = datetime(2026, 11, 23, 23, 59, 55, tzinfo=SHANGHAI)  # runs past midnight
    durations = [s for _, s, _ in PROGRAMME]
    text = receipt(
        washer=WASHER,
        scope=WASHER_SCOPE,
        operator="王护士",
        cycle="000123",
        start=start,
        durations=durations,
    )
    cycle = thermal_cn.parse(decode(text.encode("gb18030"), "gb18030"), SHANGHAI)
    assert (cycle.washer, cycle.scope, cycle.result) == (WASHER, WASHER_SCOPE, "pass")
    assert [p.kind.value for p in cycle.phases] == [
        "clean",
        "rinse",
        "disinfect",
        "final_rinse",
        "dry",
    ]
    disinfect = cycle.phases[2]
    assert disinfect.disinfectant is not None and disinfect.disinfectant.value == "opa"
    assert disinfect.ended_at - disinfect.started_at == timedelta(seconds=8)
    assert cycle.started_at == start.astimezone(UTC)
    assert cycle.ended_at == (start + timedelta(seconds=sum(durations))).astimezone(UTC)


def test_the_generated_study_has_two_series_and_counts_accessions_up():
    datasets = list(study("P1", "DEMO0001", datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)))
    assert len(datasets) == 5 and len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert sorted({ds.SeriesNumber for ds in datasets}) == [1, 2]
    assert all(len(ds.PixelData) == 64 * 64 * 2 for ds in datasets)
    assert [_nth_accession("DEMO0001", n) for n in (0, 1, 10)] == [
        "DEMO0001",
        "DEMO0002",
        "DEMO0011",
    ]


async def test_demo_open_says_so_when_no_browser_can_be_opened(monkeypatch, capsys):
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setattr(webbrowser, "open", lambda url: False)  # a server without a desktop
    try:
        await _open_when_up(f"http://127.0.0.1:{port}/")
    finally:
        await runner.cleanup()
    assert f"open http://127.0.0.1:{port}/ yourself" in capsys.readouterr().out
