"""A journal that cannot answer makes /healthz 503 and edge_agent_database_up 0."""

from __future__ import annotations

from agent.config import load_config
from agent.observe import QueueState, Snapshot
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent
from agent.web.metrics import health, render
from tests.integration.test_observability import samples


def snapshot(database_ok: bool = True, breaker: str = "closed") -> Snapshot:
    queue = QueueState("zj", {"pending": 3, "dead": 1}, 12.5, breaker, 10, 2, 1)
    error = "" if database_ok else "JournalClosedError: journal is closed"
    return Snapshot(database_ok, error, [queue], [], {"critical": 1}, 42)


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
    assert (await agent.observe()).database_ok
    await agent.journal.close()
    snapshot = await agent.observe()
    assert not snapshot.database_ok and "closed" in snapshot.database_error
    assert health(snapshot)[1] == 503
