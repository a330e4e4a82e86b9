"""Taps through the reprocessing domain, the Zhejiang uplink and the platform simulator."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.policy import Backoff
from agent.reprocessing.handler import ReprocessingHandler
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.uplink import ZhejiangEndoscopeUplink
from tests.helpers import ZHEJIANG_KEY, ZHEJIANG_SECRET
from tests.unit.test_reprocessing import Centre, make_config


def scope_of(record: dict[str, Any]) -> str:
    """The scope (or, for master data, the reader or step) a record is about."""
    for field in ("deviceRfidNumber", "rfidNumber", "number", "stepId"):
        if field in record:
            return str(record[field])
    raise AssertionError(f"no subject in {sorted(record)}")


async def test_two_scopes_reprocessed_and_used_are_accepted_record_by_record(
    open_journal, tmp_path, zhejiang_platform
):
    handler = ReprocessingHandler("endo", make_config())
    journal = await open_journal.open(handlers=(handler,))
    await journal.run(handler.queue_master_data)
    uplink = ZhejiangEndoscopeUplink(
        "zj",
        ZhejiangEndoscopeConfig.model_validate(
            {
                "type": "zhejiang_endoscope",
                "base_url": zhejiang_platform.base_url,
                "access_key": ZHEJIANG_KEY,
                "access_secret": ZHEJIANG_SECRET,
                "unique_code": "330100001",
                "credit_code": "12330100470000000X",
            }
        ),
    )
    settings = DispatchSettings(backoff=Backoff(0.01, 0.05), poll_interval=0.05)
    dispatcher = Dispatcher(journal, uplink, settings, rng=random.Random(1))
    journal.on_commit(lambda _: dispatcher.wake())
    task = asyncio.create_task(dispatcher.run())
    try:
        centre = Centre(journal, tmp_path / "journal.db")
        await centre.tap("R1", "BADGE01", after=0)
        for scope in ("00D507D0", "00AABBCC"):
            await centre.cycle(tag=scope)
            await centre.tap("R9", f"PAT-{scope}")
            await centre.tap("R9", scope)
        async with asyncio.timeout(15):
            accepted = await zhejiang_platform.wait_accepted("uploadUseStepData", 2)
    finally:
        await dispatcher.stop(grace=2.0)
        await task

    assert not zhejiang_platform.received.refused
    sent: dict[tuple[str, str], list[dict[str, str]]] = {}
    for kind, payload in centre.messages():
        sent.setdefault((kind, scope_of(payload)), []).append(
            {k: str(v) for k, v in payload.items()}
        )
    received: dict[tuple[str, str], list[dict[str, str]]] = {}
    for kind, forms in zhejiang_platform.received.accepted.items():
        for form in forms:
            received.setdefault((kind, scope_of(form)), []).append(form)
    for key, ours in sent.items():
        # Per scope, every record arrived in our order with every field as we built it
        # (the uplink adds only the auth fields).
        theirs = received.get(key, [])
        assert [{k: t[k] for k in o} for o, t in zip(ours, theirs, strict=True)] == ours, key
    assert [u["identityId"] for u in accepted] == ["PAT-00D507D0", "PAT-00AABBCC"]
    assert len(zhejiang_platform.received.accepted["addEndoSocopeInfo"]) == 2
