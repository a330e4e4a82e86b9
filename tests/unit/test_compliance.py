"""Compliance in the ingest transaction: rules judge cycles, block scopes, alert before use."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.events import Event
from agent.journal import alerts
from agent.reprocessing.config import QualityConfig, ReprocessingConfig
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.quality import QualityHandler
from agent.reprocessing.state import scope_states
from tests.unit.test_reprocessing import Centre, make_config

GOOD = {  # seconds spent at each station before the next tap: a compliant manual cycle
    "R1": 60,
    "R2": 120,
    "R3": 300,
    "R4": 120,
    "R5": 360,  # OPA for 6 min (≥ 5)
    "R6": 180,  # final rinse 3 min (≥ 2)
    "R7": 300,
    "R8": 600,
}


def opa_config(**overrides: Any) -> ReprocessingConfig:
    config = make_config(**overrides)
    stations = [s.model_dump() for s in config.stations]
    stations[4] |= {"disinfectant": "opa", "ratio_number": ""}
    return make_config(stations=stations, **overrides)


class Checked(Centre):
    """A centre whose cycles are judged; knows how long each station takes."""

    async def run_cycle(self, tag: str = "00D507D0", **durations: int) -> None:
        spent = {**GOOD, **durations}
        wait = 60.0
        for reader in ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8"):
            await self.tap(reader, tag, after=wait)
            wait = spent[reader]

    def alerts(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.path) as conn:
            return [
                {"severity": s, "code": c, "subject": j, "message": m}
                for s, c, j, m in conn.execute(
                    "SELECT severity, code, subject, message FROM alerts ORDER BY id"
                )
            ]

    def scope(self, number: str = "GIF-001") -> dict[str, Any]:
        with sqlite3.connect(self.path) as conn:
            return next(s for s in scope_states(conn) if s["number"] == number)


@pytest.fixture
async def centre(open_journal, tmp_path) -> Checked:
    handlers = (ReprocessingHandler("endo", opa_config()), alerts.Acknowledgements())
    journal = await open_journal.open(handlers=handlers)
    await journal.run(lambda conn: alerts.set_routes(conn, ["bus"]))
    return Checked(journal, tmp_path / "journal.db")


async def test_a_compliant_cycle_is_ready_and_raises_nothing(centre):
    await centre.run_cycle()
    assert centre.scope()["compliance"] == "compliant"
    assert not centre.scope()["blocked"]
    await centre.tap("R9", "00D507D0", after=600)
    assert centre.alerts() == []
    assert centre.messages()[-1][0] == "uploadUseStepData"


async def test_too_short_disinfection_blocks_the_scope_and_its_use_is_a_critical_alert(centre):
    await centre.run_cycle(R5=120)  # OPA for 2 min
    state = centre.scope()
    assert state["blocked"] and state["compliance"] == "non_compliant"
    assert [v["rule"] for v in state["violations"]] == ["contact_time"]
    assert [(a["severity"], a["code"]) for a in centre.alerts()] == [
        ("error", "ws507.contact_time")
    ]

    await centre.tap("R9", "00D507D0", after=600)
    critical = centre.alerts()[-1]
    assert (critical["severity"], critical["code"]) == ("critical", "scope_blocked_used")
    assert "2.0 min" in critical["message"] and critical["subject"] == "scope:GIF-001"
    assert centre.messages()[-1][0] == "uploadUseStepData"  # the platform must still know


async def test_every_new_alert_is_queued_for_the_alert_routes(centre):
    await centre.run_cycle(R5=120)
    await centre.tap("R9", "00D507D0", after=600)
    with sqlite3.connect(centre.path) as conn:
        rows = conn.execute(
            "SELECT kind, order_key, payload FROM outbox WHERE uplink = 'bus' ORDER BY id"
        ).fetchall()
    published = [json.loads(payload) for _, _, payload in rows]
    assert {(kind, key) for kind, key, _ in rows} == {("alert", "alerts")}
    assert [(p["severity"], p["code"], p["topic_suffix"]) for p in published] == [
        ("error", "ws507.contact_time", "error"),
        ("critical", "scope_blocked_used", "critical"),
    ]


async def test_an_override_by_a_named_person_releases_the_scope(centre):
    await centre.run_cycle(R5=120)
    override = {"scope": "GIF-001", "by": "护士长 李", "reason": "re-soaked by hand, logged"}
    await centre.journal.ingest([Event("reprocessing.override", "api", override)])
    state = centre.scope()
    assert not state["blocked"] and state["compliance"] == "overridden"
    assert state["override"] == {"by": "护士长 李", "reason": "re-soaked by hand, logged"}
    await centre.tap("R9", "00D507D0", after=600)
    assert [a["code"] for a in centre.alerts()] == ["ws507.contact_time"]


async def test_reprocessing_again_clears_the_block(centre):
    await centre.run_cycle(R5=120)
    await centre.run_cycle()  # the stored scope taken out for a new cycle
    assert not centre.scope()["blocked"]
    await centre.tap("R9", "00D507D0", after=600)
    assert "scope_blocked_used" not in [a["code"] for a in centre.alerts()]


async def test_a_second_use_without_reprocessing_is_a_critical_alert(centre):
    await centre.run_cycle()
    await centre.tap("R9", "00D507D0", after=600)
    await centre.tap("R9", "00D507D0", after=1800)  # next patient, never reprocessed
    assert [(a["severity"], a["code"]) for a in centre.alerts()] == [
        ("critical", "scope_not_reprocessed")
    ]


async def test_a_skipped_step_is_found_when_the_scope_is_stored(centre):
    for reader, wait in (("R1", 0), ("R2", 60), ("R3", 120), ("R4", 300), ("R7", 120)):
        await centre.tap(reader, "00D507D0", after=wait)
    assert not centre.scope()["blocked"]  # still in progress: the steps may yet come
    await centre.tap("R8", "00D507D0", after=300)
    state = centre.scope()
    assert state["blocked"]
    assert "missing_step" in {v["rule"] for v in state["violations"]}


async def test_thresholds_from_config_change_the_verdict(open_journal, tmp_path):
    config = opa_config(rules={"contact_minutes": {"opa": 1.5}})
    journal = await open_journal.open(handlers=(ReprocessingHandler("endo", config),))
    centre = Checked(journal, tmp_path / "journal.db")
    await centre.run_cycle(R5=120)
    assert centre.scope()["compliance"] == "compliant"


async def test_an_acknowledgement_closes_the_alert_and_names_who(centre):
    await centre.run_cycle(R5=120)
    alert_id = (await centre.journal.run(alerts.open_alerts))[0]["id"]
    ack = {"alert_id": alert_id, "by": "王护士", "note": "scope sent back to the basin"}
    await centre.journal.ingest([Event("alert.acknowledge", "api", ack)])
    assert await centre.journal.run(alerts.open_alerts) == []
    with sqlite3.connect(centre.path) as conn:
        assert conn.execute("SELECT acknowledged_by, note FROM alerts").fetchone() == (
            "王护士",
            "scope sent back to the basin",
        )


def washer_cycle(scope: str, start: Any, **changes: Any) -> Event:
    """A parsed receipt as drivers/washer emits it: a full machine programme of 38 minutes."""
    phases, at = [], start
    for name, kind, minutes, extra in (
        ("酶洗", "enzyme", 5, {"temperature_c": 40.0}),
        ("清洗", "clean", 5, {}),
        ("漂洗", "rinse", 3, {}),
        ("消毒", "disinfect", 10, {"disinfectant": "opa", "concentration_pct": 0.55}),
        ("终末漂洗", "final_rinse", 5, {}),
        ("干燥", "dry", 10, {}),
    ):
        end = at + timedelta(minutes=minutes)
        phases.append(
            {
                "name": name,
                "kind": kind,
                "started_at": at.isoformat(),
                "ended_at": end.isoformat(),
                "temperature_c": None,
                "disinfectant": None,
                "concentration_pct": None,
                **extra,
            }
        )
        at = end
    payload = {
        "washer": "AER-01",
        "program": "P1 标准",
        "cycle_number": "000123",
        "started_at": start.isoformat(),
        "ended_at": at.isoformat(),
        "operator": "王护士",
        "scope": scope,
        "phases": phases,
        "leak_test": "pass",
        "channels": [{"name": "活检管道", "result": "pass"}],
        "error_code": "",
        "result": "pass",
        "format": "thermal_cn",
        "receipt_sha256": "0" * 64,
        "receipt_text": "...",
    } | changes
    return Event("washer.cycle", "aer1", payload, occurred_at=at)


def machine_config() -> ReprocessingConfig:
    config = make_config()
    stations = [s.model_dump() for s in config.stations[:4]]
    stations.append(
        {"reader": "RW", "step_id": 20, "name": "机洗", "order": 5, "kind": "machine_wash"}
        | {"washer": "AER-01"}
    )
    stations += [s.model_dump() for s in config.stations[7:]]
    return make_config(
        stations=stations,
        washers=[{"id": "AER-01", "system": "digestive", "phase_steps": {"disinfect": 24}}],
    )


@pytest.fixture
async def machine_centre(open_journal, tmp_path) -> Checked:
    journal = await open_journal.open(handlers=(ReprocessingHandler("endo", machine_config()),))
    return Checked(journal, tmp_path / "journal.db")


async def manual_then_washer(centre: Checked, **changes: Any) -> None:
    for reader, wait in (("R1", 0), ("R2", 60), ("R3", 120), ("R4", 300), ("RW", 120)):
        await centre.tap(reader, "00D507D0", after=wait)
    await centre.journal.ingest([washer_cycle("GIF-001", centre.now, **changes)])
    await centre.tap("R8", "00D507D0", after=40 * 60)


async def test_a_washer_receipt_joins_the_cycle_and_reports_its_phases(machine_centre):
    await manual_then_washer(machine_centre)
    assert machine_centre.scope()["violations"] == []
    assert machine_centre.scope()["compliance"] == "compliant"
    records = machine_centre.messages()
    clean_ids = {p["cleanId"] for _, p in records if "cleanId" in p}
    assert len(clean_ids) == 1
    enzyme = next(p for k, p in records if k == "uploadEnzymeWashData" and "temp" in p)
    assert enzyme["temp"] == "40" and enzyme["userName"] == "王护士"
    ster = next(p for k, p in records if k == "sterProcess")
    assert (ster["type"], ster["userName"]) == (0, "王护士")
    readers = [p["readerId"] for k, p in records if k == "uploadReadData"]
    assert "AER-01-disinfect" in readers  # its own platform step
    assert readers.count("RW") == 1 + 5  # the tap into the washer, then five phases


async def test_a_failed_leak_test_on_the_receipt_blocks_the_scope(machine_centre):
    await manual_then_washer(machine_centre, leak_test="fail", result="fail")
    state = machine_centre.scope()
    assert state["blocked"]
    assert "washer_failure" in {v["rule"] for v in state["violations"]}


async def test_the_same_receipt_twice_changes_nothing(machine_centre):
    await manual_then_washer(machine_centre)
    before = machine_centre.messages()
    start = machine_centre.now - timedelta(minutes=40 + 38)
    again = washer_cycle("GIF-001", start)
    await machine_centre.journal.ingest([again])
    assert machine_centre.messages() == before


async def test_a_receipt_for_no_known_cycle_is_an_alert_not_a_loss(machine_centre):
    await machine_centre.journal.ingest([washer_cycle("XX-999", machine_centre.now)])
    assert [(a["severity"], a["code"]) for a in machine_centre.alerts()] == [
        ("warning", "washer_cycle_unlinked")
    ]
    with sqlite3.connect(machine_centre.path) as conn:
        assert conn.execute("SELECT scope, cycle_number FROM washer_cycles").fetchall() == [
            (None, "000123")
        ]


async def test_a_rejected_receipt_is_an_error_alert(machine_centre):
    rejected = {
        "reason": "truncated: no result line",
        "format": "thermal_cn",
        "quarantined": "/var/lib/edge-agent/quarantine/washer/aer1/x.bin",
        "receipt_sha256": "1" * 64,
        "size": 312,
    }
    await machine_centre.journal.ingest([Event("washer.rejected", "aer1", rejected)])
    alert = machine_centre.alerts()[0]
    assert (alert["severity"], alert["code"], alert["subject"]) == (
        "error",
        "washer_receipt_rejected",
        "washer:aer1",
    )
    assert "truncated" in alert["message"]


async def test_a_failed_cleaning_effect_test_blocks_the_scope_until_reprocessed(
    open_journal, tmp_path
):
    config = opa_config()
    handlers = (ReprocessingHandler("endo", config), QualityHandler("q", config, QualityConfig()))
    centre = Checked(await open_journal.open(handlers=handlers), tmp_path / "journal.db")
    await centre.run_cycle()
    test = {
        "scope": "GIF-001",
        "tested_at": (centre.now + timedelta(minutes=5)).isoformat(),
        "inspector": "王护士",
        "passed": False,
        "photos": ["a" * 64 + ".jpg"],
    }
    await centre.journal.ingest([Event("quality.cleaning_effect", "api", test)])
    state = centre.scope()
    assert state["blocked"] and [v["rule"] for v in state["violations"]] == ["cleaning_effect"]
    await centre.run_cycle()
    assert not centre.scope()["blocked"]


async def test_each_alert_is_logged_once_after_its_commit_without_patient_data(centre):
    with capture_logs() as logs:
        await centre.run_cycle(R5=120)
        await centre.journal.ingest(
            [Event("reprocessing.patient", "api", {"reader_id": "R9", "patient_id": "HIS0042"})]
        )
        await centre.tap("R9", "00D507D0", after=600)
        await centre.tap("R9", "00D507D0", after=5)  # a re-read: nothing new
    raised = [(e["severity"], e["code"]) for e in logs if e["event"] == "alert.raised"]
    assert raised == [("error", "ws507.contact_time"), ("critical", "scope_blocked_used")]
    assert "HIS0042" not in str(logs)


async def test_a_second_failed_cleaning_test_blocks_an_overridden_scope_again(
    open_journal, tmp_path
):
    config = opa_config()
    handlers = (ReprocessingHandler("endo", config), QualityHandler("q", config, QualityConfig()))
    centre = Checked(await open_journal.open(handlers=handlers), tmp_path / "journal.db")
    await centre.run_cycle()

    def failed_test(minutes: int) -> Event:
        tested = (centre.now + timedelta(minutes=minutes)).isoformat()
        payload = {"scope": "GIF-001", "tested_at": tested, "inspector": "王护士"}
        return Event("quality.cleaning_effect", "api", payload | {"passed": False, "photos": []})

    await centre.journal.ingest([failed_test(5)])
    override = {"scope": "GIF-001", "by": "护士长 李", "reason": "retest ordered"}
    await centre.journal.ingest([Event("reprocessing.override", "api", override)])
    assert not centre.scope()["blocked"]
    await centre.journal.ingest([failed_test(30)])  # the retest fails too
    assert centre.scope()["blocked"]


async def test_a_batch_without_its_test_is_one_alert_subject_whichever_scope_met_it(
    open_journal, tmp_path
):
    config = make_config()
    stations = [s.model_dump() for s in config.stations]
    stations[4] |= {"disinfectant": "opa", "ratio_number": "OPA-2611-01"}
    journal = await open_journal.open(
        handlers=(ReprocessingHandler("endo", make_config(stations=stations)),)
    )
    centre = Checked(journal, tmp_path / "journal.db")
    await centre.run_cycle()
    batch = [a for a in centre.alerts() if a["code"] == "ws507.batch_monitoring"]
    assert batch and {a["subject"] for a in batch} == {"batch:OPA-2611-01"}  # one snooze for it
