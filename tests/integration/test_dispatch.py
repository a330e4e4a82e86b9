"""The dispatcher against the cloud simulator: order, retries, dead letters, tokens, breaker."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.outcomes import Delivered, Outcome, Retry
from agent.dispatch.policy import Backoff, Breaker, BreakerState
from agent.events import Event
from agent.journal import queries
from agent.journal.outbox import OutboxMessage
from agent.journal.writer import Journal
from agent.simulators.http_cloud import HttpCloud, HttpCloudConfig
from agent.uplinks.http.forward import ForwardEvents
from agent.uplinks.http.uplink import HttpUplink, HttpUplinkConfig
from tests.helpers import eventually

UPLINK = "cloud"
FORWARD = ForwardEvents(f"forward:{UPLINK}", UPLINK, ("test.*",))
SLOW_BACKOFF = Backoff(base=30.0, cap=60.0)  # any backoff at all would stall the test


@dataclass
class Send:
    """One call of `uplink.send`, as the uplink saw it."""

    key: str
    attempts: int
    started: float
    breaker: BreakerState | None
    finished: float = 0.0
    outcome: Outcome | None = None


class ObservedUplink(HttpUplink):
    """The real HTTP uplink, recording every send and checking one-in-flight-per-key."""

    def __init__(self, config: HttpUplinkConfig) -> None:
        super().__init__(UPLINK, config)
        self.sends: list[Send] = []
        self.breaker: Breaker | None = None
        self.inflight: Counter[str] = Counter()
        self.max_inflight = 0
        self.same_key_overlaps = 0

    async def send(self, message: OutboxMessage) -> Outcome:
        state = None if self.breaker is None else self.breaker.state
        record = Send(message.order_key, message.attempts, time.time(), state)
        self.sends.append(record)
        if self.inflight[message.order_key]:
            self.same_key_overlaps += 1
        self.inflight[message.order_key] += 1
        self.max_inflight = max(self.max_inflight, self.inflight.total())
        try:
            record.outcome = await super().send(message)
        finally:
            self.inflight[message.order_key] -= 1
            record.finished = time.time()
        return record.outcome


class CeilingRandom(random.Random):
    """Always the top of the jitter range, so the delay is the backoff ceiling; records them."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ceilings: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.ceilings.append(b)
        return b


class ZeroRandom(random.Random):
    """Always the bottom of the jitter range: a failed message is due again at once."""

    def uniform(self, a: float, b: float) -> float:
        return a


def uplink_config(base_url: str, **overrides: Any) -> HttpUplinkConfig:
    fields: dict[str, Any] = {
        "type": "http",
        "url": f"{base_url}/ingest",
        "token_url": f"{base_url}/token",
        "client_id": "agent",
        "client_secret": "s3cret-cloud-key",
        "request_timeout": 5.0,
        **overrides,
    }
    return HttpUplinkConfig(**fields)


def tap(source: str, n: int, **extra: Any) -> Event:
    return Event("test.tap", source, {"n": n, **extra})


@asynccontextmanager
async def dispatching(
    journal: Journal,
    uplink: HttpUplink,
    settings: DispatchSettings,
    rng: random.Random | None = None,
) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher woken by the journal's commits; stop it and its task afterwards."""
    dispatcher = Dispatcher(journal, uplink, settings, rng=rng or random.Random(1))
    if isinstance(uplink, ObservedUplink):
        uplink.breaker = dispatcher.breaker
    journal.on_commit(lambda uplinks: dispatcher.wake() if UPLINK in uplinks else None)
    task = asyncio.create_task(dispatcher.run(), name="dispatcher")
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace=2.0)
        async with asyncio.timeout(5):
            await task


async def outbox(journal: Journal) -> dict[str, dict[str, Any]]:
    """Every outbox row, by dedupe key (the event id, the cloud's Idempotency-Key)."""

    def read(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        cursor = conn.execute(
            "SELECT id, order_key, dedupe_key, state, attempts, next_attempt_at, leased_at,"
            " last_error, response FROM outbox ORDER BY id"
        )
        columns = [c[0] for c in cursor.description]
        return {row[2]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}

    return await journal.run(read)


async def uplink_state(journal: Journal) -> tuple[str, int] | None:
    row = await journal.run(
        lambda conn: conn.execute(
            "SELECT breaker, consecutive_failures FROM uplink_state WHERE uplink = ?", (UPLINK,)
        ).fetchone()
    )
    return None if row is None else (row[0], row[1])


async def all_settled(journal: Journal, state: str = "delivered") -> dict[str, dict[str, Any]]:
    rows = await outbox(journal)
    return rows if rows and all(r["state"] == state for r in rows.values()) else {}


# --- 1. per-key order ----------------------------------------------------------------------


async def test_each_key_arrives_in_order_while_keys_interleave(open_journal, cloud):
    journal = await open_journal.open(handlers=(FORWARD,))
    uplink = ObservedUplink(uplink_config(cloud.url))
    settings = DispatchSettings(
        concurrency=4, backoff=Backoff(0.01, 0.05), breaker_threshold=1000, poll_interval=0.05
    )
    cloud.faults.fail_every = 4  # failed heads must hold back their key's followers
    keys = [f"scope-{k}" for k in range(5)]
    batches = [[tap(key, n) for key in keys] for n in range(8)]
    await journal.ingest(batches[0])
    async with dispatching(journal, uplink, settings):
        for batch in batches[1:]:  # more arrive while the first are in flight
            await journal.ingest(batch)
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for batch in batches for e in batch})
        rows = await eventually(lambda: all_settled(journal))

    arrivals = [cloud.received.bodies[k] for k in cloud.received.order]
    for key in keys:
        assert [a["payload"]["n"] for a in arrivals if a["source"] == key] == list(range(8))
    sources = [a["source"] for a in arrivals]
    switches = sum(1 for a, b in itertools.pairwise(sources) if a != b)
    assert switches > 2 * len(keys)  # keys interleave rather than go one after another
    assert uplink.max_inflight > 1
    assert uplink.same_key_overlaps == 0
    assert any(isinstance(s.outcome, Retry) for s in uplink.sends)  # the faults did bite
    assert set(cloud.received.deliveries.values()) == {1}
    assert len(rows) == 40


# --- 2. transient failures -------------------------------------------------------------------

BASE = 0.02
CAP = 1.0
FAILURES = 4  # failed attempts to watch before the fault clears


@dataclass(frozen=True)
class Fault:
    name: str
    arm: Callable[[HttpCloud], None]
    clear: Callable[[HttpCloud], None]
    error: str  # regex the message's last_error must match
    uplink: dict[str, Any]
    settings: dict[str, Any]


def _set(**values: Any) -> Callable[[HttpCloud], None]:
    def apply(cloud: HttpCloud) -> None:
        for name, value in values.items():
            setattr(cloud.faults, name, value)

    return apply


T = TypeVar("T")
FAULTS = [
    Fault("5xx", _set(fail_next=10**6), _set(fail_next=0), r"^HTTP 503: .*busy", {}, {}),
    Fault(
        "request-timeout",
        _set(delay=0.3),
        _set(delay=0.0),
        r"^no answer within request_timeout 0\.1 s$",
        {"request_timeout": 0.1},
        {},
    ),
    Fault(
        "send-timeout",
        _set(delay=0.3),
        _set(delay=0.0),
        r"^no answer within 0\.1 s$",
        {},
        {"send_timeout": 0.1},
    ),
    Fault(
        "connection-reset",
        _set(reset_next=10**6),
        _set(reset_next=0),
        r"^(ServerDisconnectedError|ClientOSError)",
        {},
        {},
    ),
]


async def check_retried_with_growing_delays(journal, uplink, rng, error, clear) -> None:
    """Watch FAILURES failed attempts of the only message, check them, clear the fault."""
    [row] = (
        await eventually(
            lambda: _when(
                outbox(journal),
                lambda rows: all(
                    r["state"] == "pending" and r["attempts"] >= FAILURES for r in rows.values()
                ),
            )
        )
    ).values()
    assert re.search(error, row["last_error"] or ""), row["last_error"]
    # The newest retry was scheduled a whole ceiling after its attempt started.
    ceiling = min(CAP, BASE * 2 ** (row["attempts"] - 1))
    assert row["next_attempt_at"] - row["leased_at"] >= ceiling
    await clear()

    [row] = (await eventually(lambda: all_settled(journal))).values()
    assert row["last_error"] is None
    assert json.loads(row["response"]) == {"code": 200, "msg": "ok"}
    assert row["attempts"] == len(uplink.sends) > FAILURES
    assert [s.attempts for s in uplink.sends] == list(range(1, row["attempts"] + 1))
    # Every attempt but the last failed (a send the dispatcher timed out has no outcome).
    assert [isinstance(s.outcome, Delivered) for s in uplink.sends] == [False] * (
        row["attempts"] - 1
    ) + [True]
    # Each failure's delay is the backoff ceiling, which doubles up to the cap ...
    expected = [min(CAP, BASE * 2**i) for i in range(row["attempts"] - 1)]
    assert rng.ceilings == pytest.approx(expected)
    # ... and the dispatcher really waited it out before the next attempt.
    for before, after, ceiling in zip(uplink.sends, uplink.sends[1:], rng.ceilings, strict=False):
        assert after.started - before.finished >= ceiling * 0.999


async def _when(rows: Awaitable[T | None], check: Callable[[T], bool]) -> T | None:
    value = await rows
    return value if value and check(value) else None


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_transient_failure_is_retried_with_growing_delays_until_it_clears(
    open_journal, cloud, fault
):
    journal = await open_journal.open(handlers=(FORWARD,))
    uplink = ObservedUplink(uplink_config(cloud.url, **fault.uplink))
    settings = DispatchSettings(
        backoff=Backoff(BASE, CAP), breaker_threshold=1000, poll_interval=0.05, **fault.settings
    )
    rng = CeilingRandom()
    fault.arm(cloud)
    async with dispatching(journal, uplink, settings, rng):
        await journal.ingest([tap("scope-1", 1)])

        async def clear() -> None:
            fault.clear(cloud)

        await check_retried_with_growing_delays(journal, uplink, rng, fault.error, clear)


async def test_connection_refused_is_retried_until_the_cloud_comes_up(open_journal):
    journal = await open_journal.open(handlers=(FORWARD,))
    # Bound but not listening: connecting is refused, and nobody else can take the port.
    placeholder = socket.socket()
    placeholder.bind(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    late_cloud = HttpCloud(
        "cloud",
        HttpCloudConfig.model_validate(
            {
                "type": "http_cloud",
                "port": port,
                "client_id": "agent",
                "client_secret": "s3cret-cloud-key",
            }
        ),
    )
    uplink = ObservedUplink(uplink_config(f"http://127.0.0.1:{port}"))
    settings = DispatchSettings(backoff=Backoff(BASE, CAP), breaker_threshold=1000)
    rng = CeilingRandom()

    async def come_up() -> None:
        placeholder.close()
        await late_cloud.start()

    try:
        async with dispatching(journal, uplink, settings, rng):
            await journal.ingest([tap("scope-1", 1)])
            await check_retried_with_growing_delays(
                journal, uplink, rng, r"ClientConnectorError: Cannot connect to host", come_up
            )
        assert len(late_cloud.received.deliveries) == 1
    finally:
        placeholder.close()
        await late_cloud.stop()


# --- 3. dead letters --------------------------------------------------------------------------


async def test_rejection_is_a_dead_letter_and_does_not_hold_up_anything(open_journal, cloud):
    journal = await open_journal.open(handlers=(FORWARD,))
    uplink = ObservedUplink(uplink_config(cloud.url))
    settings = DispatchSettings(concurrency=4, backoff=SLOW_BACKOFF, breaker_threshold=1)
    cloud.faults.reject_containing = "poison"
    poisoned = tap("scope-a", 0, note="poison")
    others = [tap("scope-a", 1), tap("scope-a", 2)] + [tap("scope-b", n) for n in range(3)]
    async with dispatching(journal, uplink, settings):
        await journal.ingest([poisoned, *others])
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in others})

        def settled(rows: dict[str, dict[str, Any]]) -> bool:
            return rows[poisoned.id]["state"] == "dead" and all(
                rows[e.id]["state"] == "delivered" for e in others
            )

        rows = await eventually(lambda: _when(outbox(journal), settled))

    dead = rows[poisoned.id]
    answer = json.loads(dead["response"])
    assert answer["error"].startswith("invalid record: ") and "poison" in answer["error"]
    assert dead["last_error"] == f"HTTP 422: {dead['response']}"
    assert dead["attempts"] == 1
    # Nobody waited: each message, the key's followers too, went once and only once.
    assert all(rows[e.id]["attempts"] == 1 for e in others)
    assert cloud.received.requests == 1 + len(others)
    order_a = [k for k in cloud.received.order if cloud.received.bodies[k]["source"] == "scope-a"]
    assert order_a == [others[0].id, others[1].id]
    # A rejection is an answer: the platform is up, the breaker (threshold 1) stayed closed.
    assert await uplink_state(journal) == ("closed", 0)


async def test_dead_letter_blocks_its_key_until_replayed_when_order_is_required(
    open_journal, cloud
):
    journal = await open_journal.open(handlers=(FORWARD,))
    uplink = ObservedUplink(uplink_config(cloud.url))
    # One at a time, oldest first: had a-1 not been blocked it would go before b-1.
    settings = DispatchSettings(
        concurrency=1, backoff=SLOW_BACKOFF, dead_letter_blocks_key=True, poll_interval=0.05
    )
    cloud.faults.reject_containing = "poison"
    a = [tap("scope-a", 0, note="poison"), tap("scope-a", 1), tap("scope-a", 2)]
    b = [tap("scope-b", n) for n in range(3)]
    async with dispatching(journal, uplink, settings):
        await journal.ingest([a[0], b[0], a[1], b[1], a[2], b[2]])
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in b})
        rows = await eventually(
            lambda: _when(outbox(journal), lambda r: r[b[2].id]["state"] == "delivered")
        )
        assert rows[a[0].id]["state"] == "dead"
        assert [(rows[e.id]["state"], rows[e.id]["attempts"]) for e in a[1:]] == [
            ("pending", 0),
            ("pending", 0),
        ]
        assert cloud.received.requests == 4  # a-0 once, then only scope-b

        # The operator fixes the record and replays it (what `edge-agent outbox retry` does);
        # the dispatcher notices within its poll interval, no wake-up needed.
        async with queries.connect(journal.path) as db:
            message = await queries.get_message(db, rows[a[0].id]["id"])
            assert message is not None
            payload = message["payload"]
            payload["payload"]["note"] = "fixed"
            replayed = await queries.retry(db, [message["id"]], actor="test", payload=payload)
            assert replayed == [message["id"]]
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in a})
        rows = await eventually(lambda: all_settled(journal))

    order_a = [k for k in cloud.received.order if cloud.received.bodies[k]["source"] == "scope-a"]
    assert order_a == [e.id for e in a]
    assert cloud.received.bodies[a[0].id]["payload"]["note"] == "fixed"
    assert [rows[e.id]["attempts"] for e in a] == [2, 1, 1]


# --- 4. token expiry --------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_and_sends_retried_at_once(open_journal, cloud):
    journal = await open_journal.open(handlers=(FORWARD,))
    uplink = ObservedUplink(uplink_config(cloud.url))
    # Any backoff would stall for 30 s; two failures counted would open the breaker.
    settings = DispatchSettings(concurrency=4, backoff=SLOW_BACKOFF, breaker_threshold=2)
    async with dispatching(journal, uplink, settings) as dispatcher:
        first = tap("scope-0", 0)
        await journal.ingest([first])
        await eventually(lambda: all_settled(journal))
        assert cloud.received.tokens_issued == 1

        cloud.expire_tokens()
        burst = [tap(f"scope-{k}", 1) for k in range(1, 5)]
        await journal.ingest(burst)  # one commit: all four are leased and sent together
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in burst})
        rows = await eventually(lambda: all_settled(journal))

    assert cloud.received.tokens_issued == 2  # one refresh for four expired sends
    expired = [s for s in uplink.sends if isinstance(s.outcome, Retry) and s.outcome.reauthenticate]
    assert len(expired) == 4
    assert uplink.max_inflight == 4
    assert cloud.received.requests == 1 + 4 + 4
    assert all(rows[e.id]["attempts"] == 1 for e in burst)  # resent within the same attempt
    assert all(rows[e.id]["last_error"] is None for e in burst)
    assert dispatcher.counters.retried == 0
    assert await uplink_state(journal) == ("closed", 0)


# --- 5. circuit breaker -----------------------------------------------------------------------


async def test_breaker_opens_probes_after_open_seconds_and_closes_on_success(open_journal, cloud):
    journal = await open_journal.open(handlers=(FORWARD,))
    uplink = ObservedUplink(uplink_config(cloud.url))
    open_seconds = 0.25
    settings = DispatchSettings(
        concurrency=1,
        backoff=Backoff(0.01, 0.05),
        breaker_threshold=3,
        breaker_open_seconds=open_seconds,
        poll_interval=2.0,  # a probe that waited for the poll instead would show
    )
    # Three failures open the breaker, the first probe fails and re-opens it, the second
    # probe succeeds. The zero-jitter rng makes every failed message due again at once, so
    # only the breaker holds them back.
    cloud.faults.fail_next = 3 + 1
    events = [tap(f"scope-{k}", 0) for k in range(3)]
    async with dispatching(journal, uplink, settings, ZeroRandom()):
        await journal.ingest(events)
        state = await eventually(lambda: _when(uplink_state(journal), lambda s: s[0] == "open"))
        assert state[1] >= 3  # 4 if this poll only caught the re-opening by the first probe
        async with asyncio.timeout(10):
            await cloud.wait_for({e.id for e in events})
        rows = await eventually(lambda: all_settled(journal))
        assert await uplink_state(journal) == ("closed", 0)

    states = [s.breaker for s in uplink.sends]
    closed, half_open = BreakerState.CLOSED, BreakerState.HALF_OPEN
    assert states == [closed] * 3 + [half_open] * 2 + [closed] * 2
    assert cloud.received.requests == len(uplink.sends) == 7
    # Nothing went out while open: each probe came open_seconds after the failure that
    # opened the breaker (and not a poll interval later).
    for failed, probe in ((2, 3), (3, 4)):
        quiet = uplink.sends[probe].started - uplink.sends[failed].finished
        assert open_seconds <= quiet < open_seconds + 1.0
    assert sum(r["attempts"] for r in rows.values()) == 7
