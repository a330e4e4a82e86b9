"""Reprocessing: taps become cycles with one cleanId, steps, and the platform's records."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.events import Event
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.records import make_clean_id
from tests.platform_fields import as_sent

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Hangzhou
STEPS = [
    ("R1", "pre_clean", "床侧预处理"),
    ("R2", "leak_test", "测漏"),
    ("R3", "enzyme", "酶洗"),
    ("R4", "rinse", "漂洗"),
    ("R5", "disinfect", "消毒"),
    ("R6", "final_rinse", "终末漂洗"),
    ("R7", "dry", "干燥"),
    ("R8", "store", "储存"),
    ("R9", "use", "使用"),
]


def make_config(**overrides: Any) -> ReprocessingConfig:
    stations: list[dict[str, Any]] = [
        {"reader": reader, "step_id": n, "name": name, "order": n, "kind": kind}
        for n, (reader, kind, name) in enumerate(STEPS, start=1)
    ]
    stations[4] |= {"ratio_number": "OPA-2611-01"}
    stations[7] |= {"cabinet": "CAB01"}
    return ReprocessingConfig.model_validate(
        {
            "type": "reprocessing",
            "uplink": "zj",
            "institution": {"unique_code": "330100001", "credit_code": "12330100470000000X"},
            "stations": stations,
            "endoscopes": [
                {
                    "number": "GIF-001",
                    "rfid": "00D507D0",
                    "type_name": "胃镜",
                    "brand": "Olympus",
                    "system": "digestive",
                },
                {
                    "number": "CF-002",
                    "rfid": "00AABBCC",
                    "type_name": "肠镜",
                    "system": "digestive",
                },
            ],
            "staff": [{"rfid": "BADGE01", "id": "N001", "name": "王护士"}],
            **overrides,
        }
    )


class Centre:
    """A journal with the reprocessing handler, fed taps at chosen times."""

    def __init__(self, journal: Any, path: Path) -> None:
        self.journal = journal
        self.path = path
        self.now = T0

    async def tap(self, reader: str, tag: str, after: float = 60.0) -> Event:
        self.now += timedelta(seconds=after)
        event = Event("rfid.read", reader, {"reader_id": reader, "tag": tag}, occurred_at=self.now)
        await self.journal.ingest([event])
        return event

    async def cycle(self, tag: str = "00D507D0", through: str = "R8") -> None:
        for reader, _, _ in STEPS:
            await self.tap(reader, tag)
            if reader == through:
                return

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        with sqlite3.connect(self.path) as conn:
            rows = conn.execute(
                "SELECT kind, payload FROM outbox WHERE order_key LIKE 'scope:%' ORDER BY id"
            ).fetchall()
        return [(kind, as_sent(kind, json.loads(payload))) for kind, payload in rows]

    def failures(self) -> list[str]:
        with sqlite3.connect(self.path) as conn:
            return [r[0] for r in conn.execute("SELECT error FROM handler_failures")]


@pytest.fixture
async def centre(open_journal, tmp_path) -> Centre:
    journal = await open_journal.open(handlers=(ReprocessingHandler("endo", make_config()),))
    return Centre(journal, tmp_path / "journal.db")


async def test_full_cycle_produces_every_record_in_order_with_one_clean_id(centre):
    await centre.tap("R1", "BADGE01", after=0)
    await centre.cycle()
    await centre.tap("R9", "PAT-778899")  # the patient's wristband at the use station
    await centre.tap("R9", "00D507D0")
    kinds = [kind for kind, _ in centre.messages()]
    assert kinds == [
        *["uploadReadData"] * 3,
        "uploadEnzymeWashData",  # the enzyme step closes when the scope reaches the rinse
        *["uploadReadData"] * 2,
        "sterProcess",  # disinfection closes at the final rinse
        *["uploadReadData"] * 3,
        "endoscopeSave",  # taken out of the cabinet for the use
        "uploadUseStepData",
    ]
    records = centre.messages()
    clean_ids = {payload["cleanId"] for _, payload in records if "cleanId" in payload}
    assert clean_ids == {"GIF-001-20261123090100-1"}
    first = records[0][1]
    assert first == {
        "cleanId": "GIF-001-20261123090100-1",
        "collectionTime": "2026-11-23 09:01:00",
        "deviceRfidNumber": "00D507D0",
        "readerId": "R1",
        "uploadUser": "王护士",  # the badge tapped at R1
        "uniqueCode": "330100001",
        "creditCode": "12330100470000000X",
    }
    assert records[1][1]["uploadUser"] == "edge-agent"  # nobody badged in at R2
    enzyme = records[3][1]
    assert (enzyme["startTime"], enzyme["endTime"]) == (
        "2026-11-23 09:03:00",
        "2026-11-23 09:04:00",
    )
    ster = records[6][1]
    assert ster["type"] == 0 and ster["ratioNumber"] == "OPA-2611-01"
    assert (ster["startTime"], ster["endTime"]) == ("2026-11-23 09:05:00", "2026-11-23 09:06:00")
    save = records[10][1]
    assert save["storagetNumber"] == "CAB01"
    assert (save["storeTime"], save["takeoutTime"]) == (
        "2026-11-23 09:08:00",
        "2026-11-23 09:10:00",
    )
    use = records[11][1]
    assert use["cleanId"] == "GIF-001-20261123090100-1"
    assert (use["identityId"], use["number"]) == ("PAT-778899", "GIF-001")


async def test_first_tap_after_a_use_opens_a_new_cycle(centre):
    await centre.cycle()
    await centre.tap("R9", "00D507D0")
    await centre.tap("R1", "00D507D0")
    records = centre.messages()
    assert records[-2][0] == "uploadUseStepData"
    used, fresh = records[-2][1]["cleanId"], records[-1][1]["cleanId"]
    assert used.endswith("-1") and fresh.endswith("-2")


async def test_enter_exit_station_closes_its_step_on_the_second_tap(open_journal, tmp_path):
    config = make_config()
    stations = [
        s.model_copy(update={"tap_mode": "enter_exit"}) if s.reader == "R3" else s
        for s in config.stations
    ]
    config = config.model_copy(update={"stations": stations})
    journal = await open_journal.open(handlers=(ReprocessingHandler("endo", config),))
    centre = Centre(journal, tmp_path / "journal.db")
    await centre.tap("R3", "00D507D0")
    await centre.tap("R3", "00D507D0", after=300)  # out of the enzyme bath five minutes later
    await centre.tap("R4", "00D507D0", after=600)
    enzyme = [p for k, p in centre.messages() if k == "uploadEnzymeWashData"]
    assert len(enzyme) == 1
    assert (enzyme[0]["startTime"], enzyme[0]["endTime"]) == (
        "2026-11-23 09:01:00",
        "2026-11-23 09:06:00",
    )


async def test_use_without_cleaning_is_still_reported(centre):
    await centre.cycle()
    await centre.tap("R9", "00D507D0")
    await centre.tap("R9", "00D507D0", after=1800)  # the next patient, with no reprocessing
    uses = [p for k, p in centre.messages() if k == "uploadUseStepData"]
    assert len(uses) == 2 and uses[0]["cleanId"] == uses[1]["cleanId"]


async def test_scope_stored_past_the_limit_starts_a_new_cycle(centre):
    await centre.cycle()
    await centre.tap("R1", "00D507D0", after=25 * 3600)  # back to the sink the next day
    records = centre.messages()
    assert records[-2][0] == "endoscopeSave"
    assert records[-1][1]["cleanId"].endswith("-2")


async def test_batch_registered_at_a_station_goes_into_ster_process(centre):
    batch = Event("reprocessing.batch", "api", {"reader_id": "R5", "ratio_number": "OPA-2611-02"})
    await centre.journal.ingest([batch])
    await centre.cycle(through="R6")
    ster = [p for k, p in centre.messages() if k == "sterProcess"]
    assert ster[0]["ratioNumber"] == "OPA-2611-02"


async def test_unknown_reader_and_tag_keep_the_event_and_record_why(centre):
    await centre.tap("R77", "00D507D0")
    await centre.tap("R1", "DEADBEEF")
    assert centre.failures() == [
        "UnknownReaderError: no station is configured for reader R77",
        "UnknownTagError: tag at reader R1 is not a known scope or badge",
    ]
    with sqlite3.connect(centre.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2


async def test_a_scope_matches_its_read_in_any_reader_format(centre):
    # Configured as 00D507D0; an RDM6300 delivers 40 bits (version byte 01 first).
    await centre.tap("R1", "0100D507D0")
    event = Event(
        "rfid.read", "R2", {"reader_id": "R2", "tag": "D507D0", "bits": 24}, occurred_at=T0
    )  # the Wiegand-26 reader at R2 sees facility 213, card 2000
    await centre.journal.ingest([event])
    assert [p["deviceRfidNumber"] for _, p in centre.messages()] == ["00D507D0", "00D507D0"]


async def test_master_data_is_queued_once_per_content(open_journal, tmp_path):
    handler = ReprocessingHandler("endo", make_config())
    journal = await open_journal.open(handlers=(handler,))
    first = await journal.run(handler.queue_master_data)
    assert first == 2 + 9 + 9  # scopes, readers, steps
    assert await journal.run(handler.queue_master_data) == 0  # nothing changed: nothing new
    changed = make_config(endoscopes=[{"number": "GIF-001", "rfid": "00D507D0", "status": 1}])
    assert await journal.run(ReprocessingHandler("endo", changed).queue_master_data) == 1
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        scope = as_sent(
            "addEndoSocopeInfo",
            json.loads(
                conn.execute(
                    "SELECT payload FROM outbox WHERE kind = 'addEndoSocopeInfo' ORDER BY id"
                ).fetchone()[0]
            ),
        )
    assert scope == {
        "number": "GIF-001",
        "rfidNumber": "00D507D0",
        "typeName": "胃镜",
        "model": "Olympus",
        "status": 0,
        "uniqueCode": "330100001",
        "creditCode": "12330100470000000X",
    }


def test_clean_id_is_readable_unique_and_fits_the_platform():
    at = datetime(2026, 11, 23, 9, 2)
    assert make_clean_id("GIF-001", at, 7) == "GIF-001-20261123090200-7"
    long_a, long_b = make_clean_id("X" * 64, at, 1), make_clean_id("X" * 63 + "Y", at, 1)
    assert len(long_a) <= 64 and long_a != long_b


def test_config_rejects_duplicates_and_a_centre_without_a_use_station():
    with pytest.raises(ValueError, match="tag 'AA11' matches the same reads as 'aa11'"):
        make_config(endoscopes=[{"number": "A", "rfid": "aa11"}, {"number": "B", "rfid": "AA11"}])
    with pytest.raises(ValueError, match="kind = 'use'"):
        make_config(
            stations=[{"reader": "R1", "step_id": 1, "name": "x", "order": 1, "kind": "pre_clean"}]
        )


async def test_repeated_taps_change_nothing(centre):
    # Re-reads and at-least-once redeliveries (MQTT after a crash) must not double records.
    await centre.tap("R1", "00D507D0")
    await centre.tap("R1", "00D507D0", after=5)  # still at the sink
    await centre.cycle()
    await centre.tap("R9", "00D507D0")
    await centre.tap("R9", "00D507D0", after=10)  # the same use, delivered twice
    kinds = [kind for kind, _ in centre.messages()]
    assert kinds.count("uploadUseStepData") == 1
    assert kinds.count("uploadReadData") == 8  # one per station, the repeated R1 tap included once
    with sqlite3.connect(centre.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 12  # all kept
