"""Alerts and published messages carry when their cause happened, not when it was committed."""

from __future__ import annotations

import json
import sqlite3

from tests.unit.test_lookback import centre

__all__ = ["centre"]  # the fixture this module uses


async def test_alerts_and_published_states_carry_the_event_time_not_the_commit_time(centre):
    """Issue 22 item 9: a backlog journaled hours late still says when the scope was used."""
    from agent.journal import alerts
    from agent.journal.publish import set_publish_routes

    await centre.journal.run(lambda conn: alerts.set_routes(conn, ["bus"]))
    await centre.journal.run(
        lambda conn: set_publish_routes(conn, {"scope.state": ["bus"], "health": []})
    )
    await centre.tap("R9", "00D507D0")  # used without any cycle: a critical alert
    used = centre.now  # T0 + 60 s, days before this test runs
    with sqlite3.connect(centre.path) as conn:
        at, code = conn.execute("SELECT at, code FROM alerts ORDER BY id LIMIT 1").fetchone()
        published = {
            kind: json.loads(payload)
            for kind, payload in conn.execute(
                "SELECT kind, payload FROM outbox WHERE uplink = 'bus'"
            )
        }
    assert code == "scope_not_reprocessed" and at == used.timestamp()
    assert published["alert"]["at"] == used.isoformat(timespec="seconds")
    assert published["alert"]["recorded_at"] > published["alert"]["at"]
    assert published["scope.state"]["at"] == used.isoformat(timespec="seconds")
