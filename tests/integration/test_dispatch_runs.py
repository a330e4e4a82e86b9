"""Runs: a key's messages leased together, sent in order by one task, settled in one commit."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.dispatch.dispatcher import DispatchSettings
from agent.dispatch.outcomes import Outcome
from agent.dispatch.policy import Backoff
from agent.journal.outbox import OutboxMessage
from agent.journal.writer import Journal
from tests.helpers import eventually
from tests.integration.test_dispatch import (
    FORWARD,
    ObservedUplink,
    ZeroRandom,
    all_settled,
    dispatching,
    outbox,
    tap,
    uplink_config,
)


class NumberedUplink(ObservedUplink):
    """Records which message (its payload's n, its key) each send carried, in order."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.carried: list[tuple[str, int]] = []
        self.block_at: tuple[str, int] | None = None  # this send never returns (until cancelled)
        self.blocked = asyncio.Event()

    async def send(self, message: OutboxMessage) -> Outcome:
        which = (message.order_key, message.payload["payload"]["n"])
        self.carried.append(which)
        if which == self.block_at:
            self.blocked.set()
            await asyncio.Event().wait()
        return await super().send(message)


def settings(**overrides: Any) -> DispatchSettings:
    values: dict[str, Any] = {
        "concurrency": 2,
        "backoff": Backoff(0.01, 0.02),
        "breaker_threshold": 1000,
        "poll_interval": 0.05,
        "send_run": 8,
    }
    return DispatchSettings(**(values | overrides))


async def test_runs_deliver_each_key_in_order_in_fewer_commits_than_messages(open_journal, cloud):
    journal: Journal = await open_journal.open(handlers=(FORWARD,))
    keys = [f"study-{k}" for k in range(3)]
    events = [tap(key, n) for n in range(16) for key in keys]
    await journal.ingest(events)
    uplink = NumberedUplink(uplink_config(cloud.url))
    commits = journal.commits
    async with dispatching(journal, uplink, settings()):
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in events})
        await eventually(lambda: all_settled(journal))
        used = journal.commits - commits

    for key in keys:
        assert [n for k, n in uplink.carried if k == key] == list(range(16))
    assert uplink.same_key_overlaps == 0
    assert uplink.max_inflight == 2  # two keys' runs at once
    assert set(cloud.received.deliveries.values()) == {1}
    # 48 messages in runs of 8: a lease and a settle per run, not two commits per message.
    assert used < len(events) / 2, used


async def test_a_retry_in_a_run_holds_back_the_rest_of_its_key(open_journal, cloud):
    journal = await open_journal.open(handlers=(FORWARD,))
    events = [tap("study-a", n) for n in range(6)]
    await journal.ingest(events)
    uplink = NumberedUplink(uplink_config(cloud.url))
    cloud.faults.fail_every = 3  # the third send fails once, then goes through on its retry
    async with dispatching(journal, uplink, settings(concurrency=1), rng=ZeroRandom()):
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in events})
        rows = await eventually(lambda: all_settled(journal))

    sent = [n for _, n in uplink.carried]
    failed = sent.index(2)
    assert sent[failed + 1] == 2  # nothing after it went out before it was retried
    assert sent == sorted(sent)
    assert [cloud.received.bodies[k]["payload"]["n"] for k in cloud.received.order] == list(
        range(6)
    )
    assert rows[events[2].id]["attempts"] >= 2


async def test_stopping_mid_run_settles_what_was_sent_and_releases_the_rest(open_journal, cloud):
    journal = await open_journal.open(handlers=(FORWARD,))
    events = [tap("study-a", n) for n in range(5)]
    await journal.ingest(events)
    uplink = NumberedUplink(uplink_config(cloud.url))
    uplink.block_at = ("study-a", 2)
    dispatcher_settings = settings(concurrency=1)
    async with dispatching(journal, uplink, dispatcher_settings):
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in events[:2]})
            await uplink.blocked.wait()
    # dispatching() stopped it with a grace the blocked send outlives

    rows = await outbox(journal)
    states = [rows[e.id]["state"] for e in events]
    assert states == ["delivered", "delivered", "pending", "pending", "pending"]
    assert [rows[e.id]["attempts"] for e in events[2:]] == [0, 0, 0]  # released, not failed
