"""The README's demo config runs: simulated readers → cycles → the simulated Zhejiang platform."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

from tests.agent_process import AgentProcess
from tests.helpers import demo_port_offset

DEMO = Path(__file__).parents[2] / "config" / "demo.toml"


async def test_demo_reprocesses_both_scopes_and_delivers_every_record(tmp_path):
    text = DEMO.read_text(encoding="utf-8")
    text = text.replace('state_dir = "../var/demo"', f'state_dir = "{tmp_path / "state"}"')
    # The script at test speed, thresholds scaled with it: scope A soaks long enough, B does not.
    text = re.sub(r"after = ([\d.]+)", lambda m: f"after = {0.6 if m[1] == '8.0' else 0.1}", text)
    text = text.replace("opa = 0.1 }", "opa = 0.005 }").replace("= 0.02 ", "= 0.0005 ")
    text = text.replace("repeat = true", "repeat = false")
    # Ports of their own, so a demo running on this machine does not collide with the test.
    offset = demo_port_offset()
    text = re.sub(r"\b(87[789]0|91\d\d)\b", lambda m: str(int(m.group(1)) + offset), text)
    config = tmp_path / "demo.toml"
    config.write_text(text, encoding="utf-8")
    agent = AgentProcess(config, tmp_path)
    await agent.start()
    db = tmp_path / "state" / "journal.db"

    def counts() -> dict[tuple[str, str], int]:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT kind, state, COUNT(*) FROM outbox WHERE uplink = 'zhejiang_endoscope'"
                " GROUP BY kind, state"
            ).fetchall()
        return {(kind, state): n for kind, state, n in rows}

    async with asyncio.timeout(60):
        while counts().get(("uploadUseStepData", "delivered"), 0) < 2:
            await asyncio.sleep(0.1)
    assert await agent.stop() == 0
    final = counts()
    assert not [key for key in final if key[1] != "delivered"], final
    assert final[("uploadReadData", "delivered")] == 16  # 2 scopes x 8 non-use stations
    for kind in ("uploadEnzymeWashData", "sterProcess", "endoscopeSave", "addEndoSocopeInfo"):
        assert final[(kind, "delivered")] == 2, kind
    with sqlite3.connect(db) as conn:
        verdicts = dict(conn.execute("SELECT scope, compliance FROM rp_cycles").fetchall())
        critical = conn.execute(
            "SELECT code, subject FROM alerts WHERE severity = 'critical'"
        ).fetchall()
    assert verdicts == {"GIF-H290-01": "compliant", "CF-HQ290-02": "non_compliant"}
    assert critical == [("scope_blocked_used", "scope:CF-HQ290-02")]
