"""A washer's exported cycle file joins the scope's cycle: phases, records and the verdict."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.events import Event
from agent.journal.writer import Journal
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.state import scope_states
from drivers.washer.folder import WasherFolder
from tests.integration.test_washer_folder import FIXTURES, make_folder, running, until
from tests.integration.test_washer_printer import StateContext
from tests.platform_fields import as_sent

ZONE = ZoneInfo("Asia/Shanghai")
INSTITUTION = {"unique_code": "330100001", "credit_code": "12330100470000000X"}
MANUAL = [("R1", "pre_clean"), ("R2", "leak_test"), ("R3", "enzyme"), ("R4", "rinse")]


def centre_config() -> ReprocessingConfig:
    stations: list[dict[str, Any]] = [
        {"reader": reader, "step_id": n, "name": kind, "order": n, "kind": kind}
        for n, (reader, kind) in enumerate(MANUAL, start=1)
    ]
    stations += [
        {"reader": "RW", "step_id": 5, "name": "机洗", "order": 5, "kind": "machine_wash"}
        | {"washer": "AW-03", "ratio_number": "OPA-0513"},
        {"reader": "R8", "step_id": 8, "name": "储存", "order": 8, "kind": "store"},
        {"reader": "R9", "step_id": 9, "name": "使用", "order": 9, "kind": "use"},
    ]
    return ReprocessingConfig.model_validate(
        {
            "type": "reprocessing",
            "uplink": "zj",
            "institution": INSTITUTION,
            "stations": stations,
            "endoscopes": [
                {"number": "CF-07", "rfid": "00AABBCC", "steel_number": "2900456"}
                | {"system": "digestive"}
            ],
            "washers": [{"id": "AW-03", "system": "digestive"}],
            "rules": {"severity": {"batch_monitoring": "off"}},
        }
    )


class JournalContext(StateContext):
    """The driver context of the runtime: emit returns once the event is committed."""

    def __init__(self, state_dir: Path, journal: Journal) -> None:
        super().__init__(state_dir)
        self.journal = journal

    async def emit(self, event: Event) -> bool:
        fresh = (await self.journal.ingest([event]))[0]
        await super().emit(event)
        return fresh


def at(local: str) -> datetime:
    return datetime.fromisoformat(f"2024-05-13 {local}").replace(tzinfo=ZONE)


async def tap(journal: Journal, reader: str, when: str) -> None:
    payload = {"reader_id": reader, "tag": "00AABBCC"}
    await journal.ingest([Event("rfid.read", reader, payload, occurred_at=at(when))])


async def test_an_exported_washer_cycle_joins_the_scope_cycle_and_completes_it(
    open_journal, tmp_path
):
    journal = await open_journal.open(handlers=(ReprocessingHandler("endo", centre_config()),))
    for (reader, _), when in zip(MANUAL, ("09:40", "09:42", "09:45", "09:52"), strict=True):
        await tap(journal, reader, when)
    await tap(journal, "RW", "10:01")  # into the washer; its cycle starts at 10:02:11
    inbox = tmp_path / "exports"
    inbox.mkdir()
    (inbox / "AW03-004513.csv").write_bytes((FIXTURES / "cycle_aw03.csv").read_bytes())
    folder: WasherFolder = make_folder(inbox)
    ctx = JournalContext(tmp_path / "state", journal)
    async with running(folder, ctx):
        await ctx.wait_for(lambda events: len(events) == 1)
        await until(folder, (inbox / "processed" / "AW03-004513.csv").exists)
    await tap(journal, "R8", "10:35")

    db = tmp_path / "journal.db"
    with sqlite3.connect(db) as conn:
        (state,) = scope_states(conn)
        linked = conn.execute("SELECT washer, cycle_number, scope, clean_id FROM washer_cycles")
        assert linked.fetchall() == [("AW-03", "004513", "CF-07", state["clean_id"])]
        records = [
            (kind, as_sent(kind, json.loads(payload)))
            for kind, payload in conn.execute("SELECT kind, payload FROM outbox ORDER BY id")
            if kind not in {"addEndoSocopeInfo", "addCardReaderInfo", "addCleanStepInfo"}
        ]
    assert state["compliance"] == "compliant", state["violations"]
    ster = next(payload for kind, payload in records if kind == "sterProcess")
    assert (ster["startTime"], ster["endTime"]) == ("2024-05-13 10:13:41", "2024-05-13 10:18:41")
    assert ster["ratioNumber"] == "OPA-0513" and ster["cleanId"] == state["clean_id"]
    washer_reads = [p for k, p in records if k == "uploadReadData" and p["readerId"] == "RW"]
    assert len(washer_reads) == 1 + 8  # the tap into the washer, then each of its eight phases
