"""`edge-agent demo` (the README's run command) shows the whole story, here three times faster.

The real command runs as a subprocess with its ports moved to a free range (so a demo running on
this machine and other test runs do not collide): within a minute the generated study reaches the
city platform, the washer's receipt joins the third scope's cycle, the scope taken out of the
disinfectant too early is used and raises a critical alert, and the Zhejiang outage is retried
through and drained.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent.demo import WASHER_SCOPE
from tests.helpers import demo_port_offset

OFFSET = demo_port_offset(11112, 11113)  # + the imaging ports `edge-agent demo` adds
API = f"http://127.0.0.1:{8770 + OFFSET}"
TOKEN = "demo-token-not-for-production"
ROOT = Path(__file__).parents[2]


def samples(text: str, name: str, uplink: str) -> dict[str, float]:
    """The values of metric `name` for `uplink`, by their other label."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("uplink") == uplink:
                other = sample.labels.get("outcome") or sample.labels.get("state") or ""
                found[other] = sample.value
    return found


class Story:
    """What the test has seen of the demo so far."""

    def __init__(self) -> None:
        self.study_delivered = False
        self.washed_and_stored = False
        self.blocked_alert = False
        self.retried = False
        self.drained_after_retry = False

    def done(self) -> bool:
        return all(vars(self).values())

    async def look(self, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{API}/api/v1/studies") as response:
            studies = (await response.json())["studies"]
        for study in studies:
            city = study["delivery"].get("city_imaging", {})
            pushed = city.get("exam.push", {}).get("delivered", 0)
            images = city.get("dicom.instance", {}).get("delivered", 0)
            if pushed >= 1 and images == study["instance_count"] == 5:
                self.study_delivered = True
        async with http.get(f"{API}/api/v1/scopes") as response:
            scopes = {s["number"]: s for s in (await response.json())["scopes"]}
        washed = scopes.get(WASHER_SCOPE, {})
        if washed.get("step") == "store" and washed.get("compliance") == "compliant":
            self.washed_and_stored = True
        alerts = await self.alerts(http)
        self.blocked_alert = any(
            a["severity"] == "critical" and a["code"] == "scope_blocked_used" for a in alerts
        )
        async with http.get(f"{API}/metrics") as response:
            text = await response.text()
        outcomes = samples(text, "edge_agent_deliveries_total", "zhejiang_endoscope")
        messages = samples(text, "edge_agent_outbox_messages", "zhejiang_endoscope")
        breaker = samples(text, "edge_agent_uplink_breaker_state", "zhejiang_endoscope")
        if self.retried and messages["pending"] == messages["inflight"] == 0:
            self.drained_after_retry = breaker["closed"] == 1
        self.retried = self.retried or outcomes["retried"] > 0

    async def alerts(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with http.get(f"{API}/api/v1/alerts") as response:
            alerts: list[dict[str, Any]] = (await response.json())["alerts"]
        return alerts


async def test_the_demo_command_plays_the_whole_story(tmp_path):
    state = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent.cli", "demo", "--state-dir", str(state), "--fresh"),
        *("--port-offset", str(OFFSET), "--speed", "3"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # the command finds config/demo.toml next to the package, not in the cwd
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
    )
    assert proc.stdout is not None
    output = bytearray()

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            output.extend(chunk)

    reader = asyncio.create_task(collect())
    story = Story()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            try:
                async with asyncio.timeout(60):
                    while not story.done():
                        assert proc.returncode is None, output.decode(errors="replace")
                        try:
                            await story.look(http)
                        except aiohttp.ClientConnectionError:
                            pass  # not listening yet
                        await asyncio.sleep(0.2)
            except TimeoutError:
                raise AssertionError(f"{vars(story)}\n{output.decode(errors='replace')}") from None
            codes = {a["code"] for a in await story.alerts(http)}
        assert "washer_cycle_unlinked" not in codes
        assert not any(code.startswith("washer") for code in codes), codes
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
    text = output.decode(errors="replace")
    assert f"dashboard: {API}/" in text and f"token:     {TOKEN}" in text
    assert (state / "demo.toml").is_file()
    assert (state / "city-imaging-private.pem").stat().st_mode & 0o777 == 0o600
    assert len(list((state / "washer-export" / "processed").iterdir())) >= 1


def test_the_readme_run_command_runs_the_demo_command():
    script = (ROOT / "scripts" / "demo").read_text(encoding="utf-8")
    assert script.rstrip().endswith('/.venv/bin/edge-agent" demo "$@"')
    assert "./scripts/demo    # edge-agent demo" in (ROOT / "README.md").read_text(encoding="utf-8")
