"""MQTT uplink against a real mosquitto: topics, payloads, QoS/retain, outages, TLS, timeouts."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from structlog.testing import capture_logs

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.outcomes import Delivered, Reject, Retry
from agent.dispatch.policy import Backoff
from agent.events import Event
from agent.journal.alerts import Alert, set_routes
from agent.journal.outbox import OutboxMessage
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from agent.uplinks.mqtt.config import MqttUplinkConfig
from agent.uplinks.mqtt.uplink import MqttUplink, build
from tests.helpers import eventually
from tests.mosquitto import Mosquitto, make_certificate, mosquitto_binary, running_mosquitto

UPLINK = "bus"
PREFIX = "edge-agent/ward3"
TIMEOUT = 10.0
END = f"{PREFIX}/test-end"  # published by the test after the uplink's messages: "that was all"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with running_mosquitto(tmp_path / "mosquitto") as running:
        yield running


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Test handler: a `test.queue` event queues the message its payload describes."""

    name: str = "enqueue"
    kinds: tuple[str, ...] = ("test.queue", "test.alert")

    def handle(self, tx: Transaction, event: Event) -> None:
        p = event.payload
        if event.kind == "test.alert":
            tx.raise_alert(Alert(p["code"], p["subject"], p["message"], event.id, p["severity"]))
            return
        tx.enqueue(
            uplink=UPLINK,
            kind=p["kind"],
            order_key=p["key"],
            dedupe_key=event.id,
            payload=p["body"],
        )


def queued(kind: str, body: dict[str, Any], key: str = "k") -> Event:
    return Event("test.queue", "test", {"kind": kind, "key": key, "body": body})


def make_config(broker: Mosquitto, scheme: str = "mqtt", **overrides: Any) -> MqttUplinkConfig:
    fields: dict[str, Any] = {
        "type": "mqtt",
        "url": f"{scheme}://{broker.host}:{broker.port}",
        "topic_prefix": PREFIX,
        "connect_timeout": 2.0,
        **overrides,
    }
    return MqttUplinkConfig(**fields)


def message(kind: str, payload: dict[str, Any], n: int = 1) -> OutboxMessage:
    return OutboxMessage(n, UPLINK, kind, "k", f"d{n}", payload, 1, 0.0, None)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: Any
    qos: int
    retain: bool


@asynccontextmanager
async def following(
    broker: Mosquitto, client_id: str = "follower", clean: bool = True, **tls: Any
) -> AsyncIterator[aiomqtt.Client]:
    """A subscriber to everything under PREFIX (at QoS 2: what arrives shows the sender's)."""
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=client_id, clean_session=clean, **tls
    ) as client:
        await client.subscribe(f"{PREFIX}/#", qos=2)
        yield client


async def take_all(client: aiomqtt.Client, broker: Mosquitto) -> list[Received]:
    """Everything the follower gets until the end marker the test publishes now."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="marker") as marker:
        await marker.publish(END, b"", qos=1)
    got: list[Received] = []
    async with asyncio.timeout(TIMEOUT):
        async for m in client.messages:
            if m.topic.value == END:
                return got
            assert isinstance(m.payload, bytes)
            got.append(Received(m.topic.value, json.loads(m.payload), m.qos, m.retain))
    raise AssertionError("the follower was disconnected")


@asynccontextmanager
async def dispatching(journal: Journal, uplink: MqttUplink) -> AsyncIterator[Dispatcher]:
    """Run the real dispatcher (fast retries, no breaker) woken by the journal's commits."""
    settings = DispatchSettings(
        concurrency=4, backoff=Backoff(0.02, 0.2), breaker_threshold=10**6, poll_interval=0.05
    )
    dispatcher = Dispatcher(journal, uplink, settings, rng=random.Random(1))
    journal.on_commit(lambda uplinks: dispatcher.wake() if UPLINK in uplinks else None)
    task = asyncio.create_task(dispatcher.run(), name="dispatcher")
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace=2.0)
        async with asyncio.timeout(5):
            await task


async def rows(journal: Journal) -> list[dict[str, Any]]:
    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        cursor = conn.execute(
            "SELECT id, kind, state, attempts, last_error FROM outbox ORDER BY id"
        )
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    return await journal.run(read)


async def settled(journal: Journal, count: int) -> list[dict[str, Any]] | None:
    found = await rows(journal)
    done = len(found) == count and all(r["state"] in ("delivered", "dead") for r in found)
    return found if done else None


def until_rows(journal: Journal, check: Callable[[list[dict[str, Any]]], bool]) -> Any:
    async def probe() -> list[dict[str, Any]] | None:
        found = await rows(journal)
        return found if found and check(found) else None

    return eventually(probe)


def states(logs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if e["event"].startswith("mqtt.uplink_")]


async def test_followers_get_topic_payload_qos_1_and_retained_state(
    open_journal: Any, broker: Mosquitto
) -> None:
    journal = await open_journal.open(handlers=(Enqueue(),))
    uplink = build(UPLINK, make_config(broker))
    health = {"status": "ok", "uptime": 5}
    state = {"scope": "3", "state": "ready", "topic_suffix": "3"}
    read = {"reader_id": "r1", "patient": "P-SECRET-1", "note": "内镜已清洗"}
    with capture_logs() as logs:
        async with following(broker) as live, dispatching(journal, uplink):
            await journal.ingest([queued("health", health), queued("scope.state", state)])
            await journal.ingest([queued("rfid.read", read)])
            await eventually(lambda: settled(journal, 3))
            got = await take_all(live, broker)
    assert got == [
        Received(f"{PREFIX}/health", health, 1, False),
        Received(f"{PREFIX}/scope/state/3", {"scope": "3", "state": "ready"}, 1, False),
        Received(f"{PREFIX}/rfid/read", read, 1, False),
    ]
    assert uplink.counters.connects == 1  # one connection across sends
    assert states(logs) == ["mqtt.uplink_connected"]
    assert "P-SECRET" not in repr(logs) and "内镜" not in repr(logs)

    async with following(broker, client_id="late") as late:  # retained: the latest state
        assert await take_all(late, broker) == [
            Received(f"{PREFIX}/health", health, 1, True),
            Received(f"{PREFIX}/scope/state/3", {"scope": "3", "state": "ready"}, 1, True),
        ]


async def test_payload_is_compact_utf8_json(broker: Mosquitto) -> None:
    uplink = build(UPLINK, make_config(broker, retain_kinds=[]))
    async with following(broker) as live:
        try:
            assert await uplink.send(message("health", {"a": 1, "b": "内镜"})) == Delivered()
        finally:
            await uplink.close()
        async with asyncio.timeout(TIMEOUT):
            raw = await anext(aiter(live.messages))
    assert raw.payload == '{"a":1,"b":"内镜"}'.encode()
    assert raw.topic.value == f"{PREFIX}/health"


async def test_topic_suffixes_alerts_and_unpublishable_messages(
    open_journal: Any, broker: Mosquitto
) -> None:
    journal = await open_journal.open(handlers=(Enqueue(),))
    await journal.run(lambda conn: set_routes(conn, [UPLINK]))
    alert = {"code": "scope.used_uncleaned", "subject": "scope-7", "message": "未清洗"}
    async with following(broker) as live, dispatching(journal, build(UPLINK, make_config(broker))):
        await journal.ingest(
            [
                queued("scope.state", {"state": "in_use", "topic_suffix": 12}),
                queued("test.x", {"n": 1, "topic_suffix": "a/b"}),
                queued("test.x", {"n": 2, "topic_suffix": "x/+/y"}),
                queued("test.x", {"n": 3, "topic_suffix": "x//y"}),
                queued("test.x", {"n": 4, "topic_suffix": ["no"]}),
                queued("test.x", {"n": 5}),  # same key: not held back by the dead letters
                Event("test.alert", "test", {**alert, "severity": "critical"}),
            ]
        )
        found = await eventually(lambda: settled(journal, 7))
        got = await take_all(live, broker)

    [alerted] = [r for r in got if r.topic.startswith(f"{PREFIX}/alert/")]
    assert [(r.topic, r.payload) for r in got if r is not alerted] == [
        (f"{PREFIX}/scope/state/12", {"state": "in_use"}),
        (f"{PREFIX}/test/x/a/b", {"n": 1}),
        (f"{PREFIX}/test/x", {"n": 5}),
    ]
    assert alerted.topic == f"{PREFIX}/alert/critical"
    assert set(alerted.payload) == {
        *("id", "at", "severity", "code", "subject", "message", "origin", "snoozed"),
        "recorded_at",
    }
    assert alerted.payload["message"] == "未清洗" and alerted.payload["severity"] == "critical"
    dead = [r["last_error"] for r in found if r["state"] == "dead"]
    assert dead == [
        "topic_suffix 'x/+/y' contains a wildcard (+ or #)",
        "topic_suffix 'x//y' has an empty level (leading, trailing or double /)",
        "topic_suffix must be a string, not list",
    ]


async def test_broker_outage_keeps_messages_pending_then_delivers_in_order(
    open_journal: Any, broker: Mosquitto
) -> None:
    async with following(broker, client_id="fleet", clean=False):
        pass  # a persistent session: the broker keeps what is published for it meanwhile
    journal = await open_journal.open(handlers=(Enqueue(),))
    uplink = build(UPLINK, make_config(broker))
    with capture_logs() as logs:
        async with dispatching(journal, uplink):
            await journal.ingest([queued("test.n", {"n": 0})])
            await eventually(lambda: settled(journal, 1))

            await broker.stop()
            await journal.ingest([queued("test.n", {"n": n}, key=f"k{n % 2}") for n in range(1, 7)])
            await until_rows(  # tried and failed, again and again, yet still pending
                journal,
                lambda rs: (
                    all(r["state"] == "pending" for r in rs[1:])
                    and sum(r["attempts"] for r in rs[1:]) >= 6
                ),
            )
            assert uplink.counters.connect_failures >= 3

            await broker.start()  # same port, the persisted sessions survive
            await eventually(lambda: settled(journal, 7))
    async with following(broker, client_id="fleet", clean=False) as fleet:
        got = await take_all(fleet, broker)
    numbers = [r.payload["n"] for r in got]
    assert sorted(numbers) == list(range(7))
    for key in (0, 1):  # each order key in order
        assert [n for n in numbers[1:] if n % 2 == key] == list(range(1 + (1 - key), 7, 2))
    assert all(r["state"] == "delivered" for r in await rows(journal))
    assert states(logs) == ["mqtt.uplink_connected", "mqtt.uplink_lost", "mqtt.uplink_connected"]
    assert uplink.counters.disconnects == 1


async def test_uplink_started_before_the_broker_exists(tmp_path: Path) -> None:
    broker = Mosquitto(mosquitto_binary(), tmp_path / "mosquitto")  # not started: refused
    uplink = build(UPLINK, make_config(broker))
    with capture_logs() as logs:
        try:
            assert not await uplink.healthcheck()
            for n in range(3):
                outcome = await uplink.send(message("health", {"n": n}, n))
                assert isinstance(outcome, Retry), outcome
                assert outcome.reason.startswith(f"mqtt://127.0.0.1:{broker.port}: ")
            await broker.start()
            assert await uplink.healthcheck()
            assert await uplink.send(message("health", {"n": 3}, 3)) == Delivered()
        finally:
            await uplink.close()
            await broker.stop()
    assert states(logs) == ["mqtt.uplink_lost", "mqtt.uplink_connected"]
    assert uplink.counters.connects == 1


async def test_concurrent_sends_share_one_connection(broker: Mosquitto) -> None:
    uplink = build(UPLINK, make_config(broker))
    try:
        outcomes = await asyncio.gather(
            *(uplink.send(message("test.n", {"n": n}, n)) for n in range(8))
        )
    finally:
        await uplink.close()
    assert outcomes == [Delivered()] * 8
    assert uplink.counters.connects == 1 and uplink.counters.published == 8


async def test_tls_verifies_the_broker_certificate(tmp_path: Path) -> None:
    server = make_certificate(tmp_path / "pki")
    stranger = make_certificate(tmp_path / "other-pki")
    async with running_mosquitto(tmp_path / "mosquitto", tls=server) as broker:
        for ca, verify, delivered in ((server.ca, True, True), (stranger.ca, True, False)):
            config = make_config(broker, "mqtts", ca_file=str(ca), tls_verify=verify)
            uplink = build(UPLINK, config)
            try:
                outcome = await uplink.send(message("health", {}))
            finally:
                await uplink.close()
            assert isinstance(outcome, Delivered) is delivered, outcome
        assert isinstance(outcome, Retry) and "CERTIFICATE_VERIFY_FAILED" in outcome.reason
        unverified = build(
            UPLINK, make_config(broker, "mqtts", ca_file=str(stranger.ca), tls_verify=False)
        )
        try:
            assert await unverified.send(message("health", {})) == Delivered()
        finally:
            await unverified.close()


@asynccontextmanager
async def mute_broker(connack: bool, hang_up: bool = False) -> AsyncIterator[int]:
    """A byte-level fake: CONNACK (or silence), then never a PUBACK; or hang up at a PUBLISH."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1024)  # the CONNECT packet
        if connack:
            writer.write(b"\x20\x02\x00\x00")  # CONNACK, session not present, accepted
            await writer.drain()
        if hang_up:
            await reader.read(1024)  # the PUBLISH
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def mute_config(port: int, connect_timeout: float) -> MqttUplinkConfig:
    return MqttUplinkConfig(
        type="mqtt",
        url=f"mqtt://127.0.0.1:{port}",
        topic_prefix=PREFIX,
        connect_timeout=connect_timeout,
    )


@pytest.mark.parametrize(
    ("connack", "reason"), [(True, "no PUBACK within 0.2 s"), (False, "timed out")]
)
async def test_a_broker_that_stops_answering_is_a_retry_and_a_reconnect(
    connack: bool, reason: str
) -> None:
    async with mute_broker(connack) as port:
        uplink = MqttUplink(UPLINK, mute_config(port, 0.2))
        try:
            first = await uplink.send(message("health", {}))
            second = await uplink.send(message("health", {}))
        finally:
            await uplink.close()
    assert isinstance(first, Retry) and reason in first.reason
    assert isinstance(second, Retry)
    assert uplink.counters.connects == (2 if connack else 0)  # a stale connection is replaced


async def test_a_connection_lost_before_the_puback_is_a_retry() -> None:
    async with mute_broker(connack=True, hang_up=True) as port:
        uplink = MqttUplink(UPLINK, mute_config(port, TIMEOUT))
        with capture_logs() as logs:
            try:
                outcome = await uplink.send(message("health", {"patient": "P-SECRET-2"}))
            finally:
                await uplink.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith(f"mqtt://127.0.0.1:{port}: connection lost before the PUBACK")
    assert states(logs) == ["mqtt.uplink_connected", "mqtt.uplink_lost"]
    assert "P-SECRET" not in repr(logs) + outcome.reason
    assert uplink.counters.disconnects == 1


def test_unpublishable_message_is_rejected_without_connecting() -> None:
    config = MqttUplinkConfig(type="mqtt", url="mqtt://127.0.0.1:1", topic_prefix=PREFIX)
    uplink = MqttUplink(UPLINK, config)
    outcome = asyncio.run(uplink.send(message("a.+", {})))
    assert outcome == Reject("kind 'a.+' contains a wildcard (+ or #)")
