"""Issue 4 acceptance: a too-short disinfection blocks the scope; its use alerts within a second.

The real agent with TCP station readers (the test plays them), the Zhejiang simulator, the local
API and an mqtt uplink to a real mosquitto carrying alerts. The scope soaks far less than the
5 minutes OPA needs; when it is then tapped for use, the critical alert must be on the broker
and in the API within one second of the tap, and the use record must still reach the platform.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from agent import toml_out
from drivers.rfid.rdm6300 import encode
from tests.integration.test_endoscopy_e2e import (
    CREDIT,
    KEY,
    SECRET,
    UNIQUE,
    JournalView,
    TcpReaderPeer,
    zhejiang_platform,
)
from tests.mosquitto import free_port, running_mosquitto
from tests.watched_agent import WatchedAgent

TOKEN = "e2e-api-token-0123456789"
SCOPE_TAG = "0100D507D0"
READERS = {"R5": "disinfect", "R6": "final_rinse", "R9": "use"}
PREFIX = "hospital/endoscopy"


def write_config(
    tmp_path: Path, platform_url: str, broker: Any, ports: dict[str, int], api_port: int
) -> Path:
    sources = {
        f"reader_{reader.lower()}": {
            "type": "rfid_reader",
            "url": f"tcp://127.0.0.1:{port}",
            "protocol": "rdm6300",
            "reader_id": reader,
            "debounce": 0,
            "reconnect_initial": 0.02,
            "reconnect_max": 0.2,
        }
        for reader, port in ports.items()
    }
    stations = [
        {"reader": reader, "step_id": n, "name": kind, "order": n, "kind": kind}
        | ({"disinfectant": "opa"} if kind == "disinfect" else {})
        for n, (reader, kind) in enumerate(READERS.items(), start=5)
    ]
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json", "level": "info"},
        "api": {"enabled": True, "port": api_port, "token": TOKEN},
        "alerts": {"publish_to": ["bus"]},
        "status": {"publish_to": ["bus"], "health_interval": 0.2},
        "uplinks": {
            "zhejiang": {
                "type": "zhejiang_endoscope",
                "base_url": platform_url,
                "access_key": KEY,
                "access_secret": SECRET,
                "unique_code": UNIQUE,
                "credit_code": CREDIT,
                "retry_base": 0.05,
                "retry_cap": 0.5,
            },
            "bus": {
                "type": "mqtt",
                "url": f"mqtt://{broker.host}:{broker.port}",
                "topic_prefix": PREFIX,
                "retry_base": 0.05,
                "retry_cap": 0.5,
            },
        },
        "sources": sources,
        "domains": {
            "endoscopy": {
                "type": "reprocessing",
                "uplink": "zhejiang",
                "institution": {"unique_code": UNIQUE, "credit_code": CREDIT},
                "rules": {"required_steps": ["disinfect", "final_rinse"]},
                "quality": {"photo_base_url": "https://agent.hospital.example/photos/"},
            }
        },
    }
    tables = "".join(
        "\n[[domains.endoscopy.stations]]\n"
        + "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in station.items())
        for station in stations
    )
    tables += (
        '\n[[domains.endoscopy.endoscopes]]\nnumber = "GIF-001"\n'
        f'rfid = "{SCOPE_TAG}"\nsystem = "digestive"\n'
    )
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config) + tables, encoding="utf-8")
    return path


async def latest_state(broker: Any, topics: list[str], done: Any) -> dict[str, str]:
    """What a subscriber connecting now sees: retained messages first, then updates, until done."""
    found: dict[str, str] = {}
    async with aiomqtt.Client(broker.host, broker.port, identifier="wall-screen") as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                found[str(message.topic)] = bytes(message.payload).decode()
                if len(found) == len(topics) and done(found):
                    break
    return found


async def test_a_blocked_scope_tapped_for_use_alerts_on_mqtt_and_the_api_within_a_second(
    tmp_path,
):
    api_port = free_port()
    async with zhejiang_platform() as platform, running_mosquitto(tmp_path / "mq") as broker:
        peers = {reader: TcpReaderPeer() for reader in READERS}
        for peer in peers.values():
            await peer.start()
        config = write_config(
            tmp_path, platform.base_url, broker, {r: p.port for r, p in peers.items()}, api_port
        )
        journal = JournalView(tmp_path / "state" / "journal.db")
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        try:
            for peer in peers.values():
                await peer.wait_links(1)

            async def tap(reader: str, count: int) -> None:
                await peers[reader].send(encode(bytes.fromhex(SCOPE_TAG)))
                await journal.wait_taps(count)

            headers = {"Authorization": f"Bearer {TOKEN}"}
            url = f"http://127.0.0.1:{api_port}/api/v1"
            await tap("R5", 1)  # into the OPA basin …
            await tap("R6", 2)  # … and out again within a second: far below 5 minutes
            patient = {"reader_id": "R9", "patient_id": "HIS0042", "patient_name": "张三"}
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{url}/patients", json=patient, headers=headers) as response,
            ):
                assert response.status == 201
            async with aiomqtt.Client(broker.host, broker.port, identifier="nurse-station") as bus:
                await bus.subscribe(f"{PREFIX}/alert/#", qos=1)
                await peers["R9"].send(encode(bytes.fromhex(SCOPE_TAG)))
                async with asyncio.timeout(1.0):  # the acceptance bound: tap to alert on the bus
                    async for message in bus.messages:
                        alert = json.loads(message.payload)
                        if alert["severity"] == "critical":
                            break
            assert str(message.topic) == f"{PREFIX}/alert/critical"
            assert (alert["code"], alert["subject"]) == ("scope_blocked_used", "scope:GIF-001")
            assert "contact" in alert["message"]  # says why: the OPA contact time

            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/alerts", headers=headers) as response:
                    listed = (await response.json())["alerts"]
                async with http.get(f"{url}/scopes", headers=headers) as response:
                    scopes = (await response.json())["scopes"]
            assert listed[0]["code"] == "scope_blocked_used"
            assert "ws507.contact_time" in {a["code"] for a in listed}
            assert scopes[0]["blocked"] and scopes[0]["number"] == "GIF-001"

            # A screen that connects later sees the scope's state and the agent's health at once
            # (retained), blocked included; and no patient data in either.
            scope_topic, health_topic = f"{PREFIX}/scope/state/GIF-001", f"{PREFIX}/health"
            retained = await latest_state(
                broker,
                [scope_topic, health_topic],
                lambda found: json.loads(found[scope_topic])["last_use_at"] is not None,
            )
            state = json.loads(retained[scope_topic])
            assert state["blocked"] and state["compliance"] == "non_compliant"
            assert json.loads(retained[f"{PREFIX}/health"])["status"] == "ok"
            assert not any("HIS0042" in text or "张三" in text for text in retained.values())

            # The platform must know: the use is recorded although the scope was blocked.
            async with asyncio.timeout(20):
                await platform.wait_until(lambda r: len(r.accepted["uploadUseStepData"]) == 1)
            use = platform.received.accepted["uploadUseStepData"][0]
            ster = platform.received.accepted["sterProcess"][0]
            assert use["cleanId"] == ster["cleanId"] and use["number"] == "GIF-001"
            assert use["identityId"] == "HIS0042"
            assert await agent.stop() == 0
        finally:
            if agent.proc is not None and agent.proc.returncode is None:
                await agent.kill()
            for peer in peers.values():
                await peer.stop()
