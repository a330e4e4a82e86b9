"""Crash safety: SIGKILL the agent at random moments under load, restart it, then count.

The cloud simulator lives in the test process and survives every kill; the agent is the real
`edge-agent run` in a subprocess. After each kill the journal is read (read-only) the way the next
start will find it.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.simulators.http_cloud import HttpCloud
from tests.agent_process import AgentProcess

UPLINK = "cloud"
CONCURRENCY = 4  # per-uplink sends in flight: the most a single kill can leave unsettled
PRODUCERS = 4
PER_RUN = 100  # events per producer per run: bounds the backlog the final run must drain
MAX_KILL_DELAY = 0.5  # s after READY; covers ingest (first ~0.1 s) and delivery of the backlog
SHUTDOWN_TIMEOUT = 5.0
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0
LIVE_STATES = {"pending", "inflight", "delivered"}  # no answer here ever rejects a message


def write_config(
    tmp_path: Path,
    cloud: HttpCloud,
    name: str,
    *,
    source: bool = True,
    producers: int = PRODUCERS,
    count: int = PER_RUN,
) -> Path:
    """An agent config: a full-speed synthetic source (if `source`) forwarded to `cloud`."""
    path = tmp_path / name
    path.write_text(
        f"""
[agent]
state_dir = "state"
shutdown_timeout = {SHUTDOWN_TIMEOUT}
stats_interval = 0
[log]
format = "json"
[sources.sensor]
type = "synthetic"
enabled = {str(source).lower()}
rate = 0
producers = {producers}
count = {count}
ack_log = "acked.log"
[uplinks.{UPLINK}]
type = "http"
url = "{cloud.url}/ingest"
token_url = "{cloud.url}/token"
client_id = "agent"
client_secret = "s3cret-cloud-key"
forward = ["synthetic.*"]
concurrency = {CONCURRENCY}
retry_base = 0.05
retry_cap = 0.5
""",
        encoding="utf-8",
    )
    return path


@dataclass(frozen=True)
class Journal:
    """What a restart finds in the journal."""

    events: Counter[str]  # event id -> rows
    messages: Counter[tuple[str, str, str | None]]  # (uplink, dedupe_key, event_id) -> rows
    states: Counter[str]  # outbox state -> messages
    inflight: frozenset[str]  # dedupe keys of messages left in flight
    attempts: dict[str, int]  # dedupe key -> attempts


def read_journal(db: Path) -> Journal:
    """Read the journal without writing to it (no checkpoint, no recovery of leases)."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        events = Counter(row[0] for row in conn.execute("SELECT id FROM events"))
        rows = conn.execute(
            "SELECT uplink, dedupe_key, event_id, state, attempts FROM outbox"
        ).fetchall()
    finally:
        conn.close()
    return Journal(
        events=events,
        messages=Counter((uplink, key, event_id) for uplink, key, event_id, _, _ in rows),
        states=Counter(row[3] for row in rows),
        inflight=frozenset(row[1] for row in rows if row[3] == "inflight"),
        attempts={row[1]: row[4] for row in rows},
    )


def read_acked(ack_log: Path) -> set[str]:
    """Ids whose ingest returned; each line is one write(2), so no line is ever partial."""
    if not ack_log.exists():
        return set()
    lines = ack_log.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    counted = Counter(lines)
    twice = [key for key, n in counted.items() if n > 1]
    assert not twice, f"acknowledged more than once: {twice[:5]}"
    assert "" not in counted, "empty line inside the ack log"
    return set(counted)


def check_journal(db: Path, ack_log: Path, context: str) -> tuple[Journal, set[str]]:
    """Nothing acknowledged is missing; every event is there once with its one message."""
    journal = read_journal(db)
    acked = read_acked(ack_log)
    missing = acked - journal.events.keys()
    assert not missing, f"{context}: {len(missing)} acknowledged events lost, e.g. {min(missing)}"
    repeated = [key for key, n in journal.events.items() if n != 1]
    assert not repeated, f"{context}: events journaled more than once: {repeated[:5]}"
    # An event is present together with everything derived from it, or not at all.
    expected: Counter[tuple[str, str, str | None]] = Counter(
        (UPLINK, key, key) for key in journal.events
    )
    assert journal.messages == expected, (
        f"{context}: outbox does not match events: "
        f"missing {list((expected - journal.messages).elements())[:5]}, "
        f"extra {list((journal.messages - expected).elements())[:5]}"
    )
    assert journal.states.keys() <= LIVE_STATES, f"{context}: unexpected states {journal.states}"
    return journal, acked


async def drain_and_stop(tmp_path: Path, cloud: HttpCloud, expected: set[str], context: str) -> str:
    """Run the agent without producers until `cloud` has every key; SIGTERM must exit 0."""
    agent = AgentProcess(write_config(tmp_path, cloud, "drain.toml", source=False), tmp_path)
    await agent.start(timeout=START_TIMEOUT)
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT):
            await cloud.wait_for(expected)
    except TimeoutError:
        await agent.kill()
        missing = expected - cloud.received.deliveries.keys()
        output = await agent.output()
        raise AssertionError(
            f"{context}: {len(missing)} messages never delivered; agent said:\n{output[-3000:]}"
        ) from None
    # Graceful stop: sources stopped, in-flight sends settled within shutdown_timeout, exit 0.
    code = await agent.stop(timeout=SHUTDOWN_TIMEOUT + 15)
    output = await agent.output()
    assert code == 0, f"{context}: exit code {code} after SIGTERM:\n{output[-3000:]}"
    return output


def log_lines(output: str, event: str) -> list[dict[str, object]]:
    """The agent's JSON log lines about `event`."""
    lines = (json.loads(text) for text in output.splitlines() if text.startswith("{"))
    return [line for line in lines if line.get("event") == event]


async def crash_repeatedly(tmp_path: Path, cloud: HttpCloud, kills: int) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    db = tmp_path / "state" / "journal.db"
    ack_log = tmp_path / "acked.log"
    config = write_config(tmp_path, cloud, "agent.toml")
    left_inflight = mid_ingest = 0
    journaled: set[str] = set()
    for kill in range(1, kills + 1):
        context = f"kill {kill}/{kills} (seed {seed})"
        agent = AgentProcess(config, tmp_path)
        await agent.start(timeout=START_TIMEOUT)
        await asyncio.sleep(rng.uniform(0, MAX_KILL_DELAY))
        assert agent.proc is not None
        if agent.proc.returncode is not None:
            raise AssertionError(f"{context}: agent died on its own:\n{await agent.output()}")
        await agent.kill()
        await agent.output()  # drain the pipe so the transport closes
        journal, _ = check_journal(db, ack_log, context)
        lost = journaled - journal.events.keys()  # committed earlier, acknowledged or not
        assert not lost, f"{context}: {len(lost)} journaled events vanished"
        left_inflight += bool(journal.inflight)
        mid_ingest += len(journal.events) - len(journaled) < PRODUCERS * PER_RUN
        journaled = set(journal.events)

    context = f"after {kills} kills (seed {seed})"
    before, acked = check_journal(db, ack_log, context)
    expected = set(before.events)  # acknowledged or not: everything journaled gets delivered
    assert acked <= expected
    await drain_and_stop(tmp_path, cloud, expected, context)

    after, _ = check_journal(db, ack_log, context)
    assert after.events == before.events, f"{context}: events changed without a source"
    assert after.states == Counter({"delivered": len(expected)}), f"{context}: {after.states}"
    deliveries = cloud.received.deliveries
    assert deliveries.keys() == expected, f"{context}: the cloud got keys the journal never had"
    # Duplicates come only from sends whose answer a kill cut off before "delivered" was
    # committed. A kill can cut off at most CONCURRENCY sends, each message at most once, so
    # the "extra deliveries <= kills" holds per message, and kills x CONCURRENCY total.
    extra = {key: n - 1 for key, n in deliveries.items() if n > 1}
    assert max(extra.values(), default=0) <= kills, f"{context}: {extra}"
    assert sum(extra.values()) <= kills * CONCURRENCY, f"{context}: {sum(extra.values())} extra"
    print(
        f"\n{context}: {len(expected)} events ({len(acked)} acknowledged), "
        f"{sum(deliveries.values())} deliveries, {sum(extra.values())} duplicates, "
        f"{mid_ingest} kills during ingest, {left_inflight} with messages in flight"
    )


@pytest.mark.parametrize("kills", [20])
async def test_sigkill_under_load_loses_nothing(tmp_path, cloud, kills):
    await crash_repeatedly(tmp_path, cloud, kills)


@pytest.mark.slow
@pytest.mark.parametrize("kills", [200])
async def test_sigkill_under_load_loses_nothing_long(tmp_path, cloud, kills):
    await crash_repeatedly(tmp_path, cloud, kills)


async def test_leases_in_flight_at_a_kill_are_recovered(tmp_path, cloud):
    cloud.faults.hold = True  # every ingest waits until released: the sends stay in flight
    db = tmp_path / "state" / "journal.db"
    ack_log = tmp_path / "acked.log"
    # One order key per producer, so CONCURRENCY keys can each have their head in flight.
    config = write_config(tmp_path, cloud, "agent.toml", producers=CONCURRENCY, count=3)
    agent = AgentProcess(config, tmp_path)
    await agent.start(timeout=START_TIMEOUT)
    async with asyncio.timeout(30):
        await cloud.wait_held(CONCURRENCY)
    assert read_journal(db).states["inflight"] == CONCURRENCY
    await agent.kill()
    await agent.output()

    killed, _ = check_journal(db, ack_log, "after the kill")
    assert len(killed.inflight) == CONCURRENCY
    assert not cloud.received.deliveries  # nothing was answered
    cloud.release_held()  # the restarted agent's sends (and the dead one's) are answered now
    output = await drain_and_stop(tmp_path, cloud, set(killed.events), "after restart")

    recovered = log_lines(output, "outbox.leases_recovered")
    assert [line["messages"] for line in recovered] == [CONCURRENCY]
    final, _ = check_journal(db, ack_log, "after restart")
    assert final.states == Counter({"delivered": len(killed.events)})
    for key in killed.inflight:
        # The attempt the kill cut off still counts; the restarted agent's send settled it.
        assert final.attempts[key] == 2
        # The dead agent's request may still have been processed once the gate opened.
        assert 1 <= cloud.received.deliveries[key] <= 2
