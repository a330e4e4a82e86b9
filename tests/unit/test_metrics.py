"""/healthz: 503 for a journal that cannot answer or an open breaker, degraded for a device."""

from __future__ import annotations

from dataclasses import replace

from agent.config import load_config
from agent.journal.readers import Readers
from agent.observe import DiskState, QueueState, Snapshot, SourceState
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent
from agent.web.metrics import health, render
from tests.integration.test_observability import samples


def snapshot(
    database_ok: bool = True, breaker: str = "closed", sources: list[SourceState] | None = None
) -> Snapshot:
    queue = QueueState("zj", {"pending": 3, "dead": 1}, 12.5, breaker, 10, 2, 1)
    error = "" if database_ok else "JournalClosedError: journal is closed"
    return Snapshot(database_ok, error, [queue], sources or [], {"critical": 1}, 42)


def test_a_failing_database_is_unhealthy_and_reported_as_down():
    body, status = health(snapshot(database_ok=False))
    assert status == 503 and body["problems"] == ["database"]
    assert body["database"]["error"].startswith("JournalClosedError")
    assert (
        samples(render(snapshot(database_ok=False)).decode())[("edge_agent_database_up", ())] == 0
    )


def test_an_open_breaker_is_unhealthy_and_a_half_open_one_is_not():
    assert health(snapshot(breaker="open"))[1] == 503
    assert health(snapshot(breaker="half_open"))[1] == 200


def test_a_device_away_makes_the_agent_degraded_not_unhealthy_and_names_it():
    sources = [
        SourceState("reader_room_1", "rfid_reader", "running", False, {}, "tcp://x:1: refused"),
        SourceState("washer_aer_01", "washer_printer", "down", None),
        SourceState("pacs_in", "dicom_scp", "running", None),
        SourceState("sensor", "synthetic", "finished", None),  # done with its work: fine
    ]
    body, status = health(snapshot(sources=sources))
    assert status == 200 and body["status"] == "degraded"
    assert body["degraded"] == [
        "source:reader_room_1: offline (tcp://x:1: refused)",
        "source:washer_aer_01: down",
    ]
    assert body["sources"]["reader_room_1"]["link"] == "tcp://x:1: refused"
    assert health(snapshot(breaker="open", sources=sources))[0]["status"] == "unhealthy"
    body, _ = health(
        snapshot(sources=[SourceState("reader_room_1", "rfid_reader", "running", True)])
    )
    assert body["status"] == "ok" and body["degraded"] == []


def test_queue_figures_reach_the_exposition():
    found = samples(render(snapshot()).decode())
    assert found[("edge_agent_outbox_messages", (("state", "pending"), ("uplink", "zj")))] == 3
    assert found[("edge_agent_outbox_oldest_pending_seconds", (("uplink", "zj"),))] == 12.5
    assert found[("edge_agent_deliveries_total", (("outcome", "dead"), ("uplink", "zj")))] == 1
    assert found[("edge_agent_alerts_open", (("severity", "critical"),))] == 1


async def test_a_closed_journal_makes_the_agent_report_its_database_down(open_journal, tmp_path):
    config_path = tmp_path / "agent.toml"
    config_path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    agent = Agent(load_config(config_path, PLUGIN_KINDS))
    agent.journal = await open_journal.open()
    agent.readers = Readers(agent.journal.path)
    assert (await agent.observe()).database_ok
    await agent.journal.close()
    snapshot = await agent.observe()
    await agent.readers.close()
    assert not snapshot.database_ok and "closed" in snapshot.database_error
    assert health(snapshot)[1] == 503


def test_disk_pressure_degrades_health_and_reaches_the_exposition():
    disk = DiskState(300 * 1024 * 1024, "warning", 500, 200)
    body, status = health(replace(snapshot(), disk=disk))
    assert status == 200 and body["status"] == "degraded"
    assert body["degraded"] == ["disk: warning (spool's free space below its threshold)"]
    assert body["disk"] == {
        "level": "warning",
        "free_bytes": 300 * 1024 * 1024,
        "warning_free_mb": 500,
        "critical_free_mb": 200,
    }
    found = samples(render(replace(snapshot(), disk=disk)).decode())
    assert found[("edge_agent_spool_free_bytes", ())] == 300 * 1024 * 1024
    assert found[("edge_agent_disk_pressure_level", (("level", "warning"),))] == 1
    assert found[("edge_agent_disk_pressure_level", (("level", "critical"),))] == 0
    assert found[("edge_agent_disk_pressure_threshold_bytes", (("level", "critical"),))] == (
        200 * 1024 * 1024
    )
    ok = replace(disk, level="ok")
    assert health(replace(snapshot(), disk=ok))[0]["status"] == "ok"
