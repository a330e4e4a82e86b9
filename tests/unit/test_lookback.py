"""Lookback: from a scope, a patient, a washer batch: every patient reached and every cycle met."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.lookback import (
    LookbackAudit,
    LookbackError,
    Question,
    answer,
    audit_payload,
    resolve_scope,
)
from agent.reprocessing.lookback_export import flat_rows, to_csv
from tests.unit.test_reprocessing import T0, Centre, make_config

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def centre(open_journal, tmp_path) -> Centre:
    handlers = (ReprocessingHandler("endo", make_config()), LookbackAudit())
    journal = await open_journal.open(handlers=handlers)
    return Centre(journal, tmp_path / "journal.db")


async def use(centre: Centre, patient: str, scope: str = "00D507D0") -> None:
    await centre.tap("R9", patient)
    await centre.tap("R9", scope)


def ask(centre: Centre, question: Question) -> list[dict[str, Any]]:
    with sqlite3.connect(centre.path) as conn:
        return answer(conn, question)


async def test_scope_lookback_lists_every_use_since_a_cycle_with_the_cycle_before_it(centre):
    await centre.tap("R1", "BADGE01", after=0)
    await centre.cycle()
    await use(centre, "PAT-0001")
    await centre.cycle()
    await use(centre, "PAT-0002")
    await use(centre, "PAT-0003")  # used again without reprocessing (an hour later)
    await centre.cycle(tag="00AABBCC")
    await use(centre, "PAT-0004", scope="00AABBCC")  # another scope: not in the answer

    everything = ask(centre, Question("scope", "GIF-001", since=T0))
    assert [e["use"]["patient_id"] for e in everything] == ["PAT-0001", "PAT-0002", "PAT-0003"]
    first = everything[0]["cycle"]
    assert [s["kind"] for s in first["steps"]][:3] == ["pre_clean", "leak_test", "enzyme"]
    assert first["steps"][0]["operator"] == "王护士"  # upload_user = name
    assert {s["ratio_number"] for s in first["steps"]} >= {"OPA-2611-01"}
    assert everything[2]["cycle"] is None  # the third use had no cycle of its own

    second_cycle = everything[1]["use"]["clean_id"]
    since_cycle = ask(centre, Question("scope", "GIF-001", cycle=second_cycle))
    assert [e["use"]["patient_id"] for e in since_cycle] == ["PAT-0002", "PAT-0003"]

    rows = flat_rows(everything, SHANGHAI, full=False)
    assert rows[0]["patient_id"] == "****0001"  # masked unless the export is full
    assert rows[2]["clean_id"] == "无洗消记录"
    assert flat_rows(everything, SHANGHAI, full=True)[0]["patient_id"] == "PAT-0001"
    csv_text = to_csv(flat_rows(everything, SHANGHAI, full=True))
    assert csv_text.startswith("\ufeff内镜编号,使用时间,患者ID")
    assert "PAT-0003" in csv_text and "PAT-0004" not in csv_text


async def test_patient_lookback_lists_every_scope_with_its_preceding_cycle(centre):
    await centre.cycle()
    await centre.cycle(tag="00AABBCC")
    await use(centre, "PAT-0042")
    await use(centre, "PAT-0042", scope="00AABBCC")
    await centre.cycle()
    await use(centre, "PAT-0099")
    found = ask(centre, Question("patient", "PAT-0042"))
    assert [(e["use"]["scope"], e["cycle"]["scope"]) for e in found] == [
        ("GIF-001", "GIF-001"),
        ("CF-002", "CF-002"),
    ]
    assert all(e["cycle"]["compliance"] in ("compliant", "non_compliant") for e in found)


async def test_batch_lookback_lists_cycles_in_the_period_and_the_uses_after_them(centre):
    await centre.cycle()
    await use(centre, "PAT-0001")
    await centre.cycle(tag="00AABBCC")  # disinfected in the same batch, not used yet
    period = Question("batch", "OPA-2611-01", since=T0, until=centre.now + timedelta(minutes=1))
    found = ask(centre, period)
    assert [(e["cycle"]["scope"], e["use"] and e["use"]["patient_id"]) for e in found] == [
        ("GIF-001", "PAT-0001"),
        ("CF-002", None),
    ]
    assert ask(centre, Question("batch", "OTHER", since=T0, until=centre.now)) == []
    with pytest.raises(LookbackError, match="period"):
        ask(centre, Question("washer", "W1", since=T0))


async def test_washer_lookback_lists_its_cycles_and_the_runs_no_cycle_claimed(centre):
    await centre.cycle()
    await use(centre, "PAT-0001")
    with sqlite3.connect(centre.path) as conn:
        (clean_id,) = conn.execute("SELECT clean_id FROM rp_cycles").fetchone()
        run = "INSERT INTO washer_cycles (washer, cycle_number, started_at, ended_at, operator,"
        run += " scope, clean_id, result, event_id) VALUES (?, ?, ?, ?, '王护士', ?, ?, ?, 'e')"
        at = [(T0 + timedelta(minutes=m)).isoformat() for m in (5, 30, 90, 120, 20000)]
        conn.executemany(
            run,
            [
                ("W1", "11", at[0], at[1], "GIF-001", clean_id, "pass"),
                ("W1", "12", at[2], at[3], None, None, "fail"),  # nobody tapped a scope
                ("W2", "13", at[2], at[3], None, None, "pass"),  # another washer
                ("W1", "14", at[4], at[4], None, None, "pass"),  # after the period
            ],
        )

    period = Question("washer", "W1", since=T0, until=T0 + timedelta(days=1))
    found = ask(centre, period)

    assert [(e["cycle"] or {}).get("clean_id") for e in found] == [clean_id, None]
    assert found[0]["use"]["patient_id"] == "PAT-0001"
    assert found[1]["use"] is None and found[1]["unlinked_run"]["cycle_number"] == "12"
    rows = flat_rows(found, SHANGHAI, full=False)
    assert rows[1]["clean_id"] == "未关联洗消周期"
    assert rows[1]["washers"].startswith("W1 #12 fail 2026-11-23 10:30:00")
    assert "未关联洗消周期" in to_csv(rows)


async def test_scope_is_found_by_rfid_and_an_unknown_cycle_is_refused(centre):
    assert resolve_scope([make_config()], "00D507D0") == "GIF-001"
    assert resolve_scope([make_config()], "GIF-001") == "GIF-001"
    with pytest.raises(LookbackError, match="no cycle"):
        ask(centre, Question("scope", "GIF-001", cycle="nope"))


async def test_each_lookback_run_is_kept_in_the_audit_trail(centre):
    from agent.events import Event

    question = Question("patient", "PAT-0042", since=datetime(2026, 1, 1, tzinfo=UTC))
    payload = audit_payload(question, by="感控 李", via="api", full=True)
    await centre.journal.ingest([Event("lookback.run", "api", payload)])
    with sqlite3.connect(centre.path) as conn:
        row = conn.execute("SELECT actor, action, target, detail FROM audit").fetchone()
    assert row[:3] == ("感控 李", "lookback.patient", "patient:PAT-0042")
    assert '"full": true' in row[3] and "2026-01-01T00:00:00+00:00" in row[3]
