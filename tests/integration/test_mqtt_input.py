"""MQTT RFID input against a real mosquitto: payloads, skips, reconnects, sessions, acks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from agent.events import Event
from drivers.mqtt import Malformed, MqttRfidConfig, MqttRfidSource, Tap, build, decode
from tests.mosquitto import Mosquitto, make_certificate, running_mosquitto

TIMEOUT = 10.0
T0 = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with running_mosquitto(tmp_path / "mosquitto") as running:
        yield running


class RecordingContext:
    """A fake DriverContext: records events; `gate` (if set) holds every emit until released."""

    state_dir = Path("/nonexistent")  # these sources write nothing there

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.events: list[Event] = []
        self.gate = gate
        self.entered = asyncio.Event()

    async def emit(self, event: Event) -> bool:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.events.append(event)
        return True

    def tags(self) -> list[str]:
        return [event.payload["tag"] for event in self.events]


def make_config(broker: Mosquitto, **overrides: Any) -> MqttRfidConfig:
    return MqttRfidConfig.model_validate(
        {
            "type": "mqtt_rfid",
            "host": broker.host,
            "port": broker.port,
            "topic": "readers/+/tag",
            "reader_from_topic": 1,
            "reconnect_initial": 0.02,
            "reconnect_max": 0.1,
            "connect_timeout": 2.0,
            **overrides,
        }
    )


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(source: MqttRfidSource, ctx: RecordingContext) -> AsyncIterator[None]:
    """Run the source until the block ends; the block starts once it has subscribed."""
    task = asyncio.create_task(source.run(ctx))
    try:
        await until(lambda: source.online or task.done())
        if task.done():
            task.result()
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def publish(
    broker: Mosquitto, *messages: tuple[str, str | bytes], retain: bool = False
) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-publisher") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


async def test_json_and_plain_payloads_become_rfid_reads(broker):
    json_source = build("ward_json", make_config(broker))
    plain_source = build(
        "ward_plain",
        make_config(
            broker,
            topic="plain/#",
            payload_format="plain",
            reader_from_topic=None,
            reader_topic_regex=r"^plain/(?P<reader>[^/]+)/",
        ),
    )
    json_ctx, plain_ctx = RecordingContext(), RecordingContext()
    async with running(json_source, json_ctx), running(plain_source, plain_ctx):
        await publish(
            broker,
            ("readers/r1/tag", json.dumps({"tag": "04a1b2c3", "rssi": -40})),
            ("readers/r2/tag", json.dumps({"tag": 1234567890})),
            ("plain/r3/scan", "PATIENT-0042\r\n"),
            ("plain/r3/scan", "e2 00"),
        )
        await until(lambda: len(json_ctx.events) == 2 and len(plain_ctx.events) == 2)

    assert [e.payload for e in json_ctx.events] == [
        {"reader_id": "r1", "tag": "04A1B2C3", "raw": "04a1b2c3", "protocol": "mqtt", "bits": 32},
        {
            "reader_id": "r2",
            "tag": "1234567890",
            "raw": "1234567890",
            "protocol": "mqtt",
            "bits": 40,
        },
    ]
    assert [e.payload for e in plain_ctx.events] == [
        {
            "reader_id": "r3",
            "tag": "PATIENT-0042",
            "raw": "PATIENT-0042",
            "protocol": "mqtt",
            "bits": 0,
        },
        {"reader_id": "r3", "tag": "e2 00", "raw": "e2 00", "protocol": "mqtt", "bits": 0},
    ]
    assert all(e.kind == "rfid.read" for e in json_ctx.events + plain_ctx.events)
    assert {e.source for e in json_ctx.events} == {"ward_json"}
    assert json_source.counters.emitted == 2
    assert not json_source.counters.skipped


async def test_device_time_becomes_occurred_at(broker):
    source = build("ward", make_config(broker, time_field="at"))
    ctx = RecordingContext()
    with capture_logs() as logs:
        async with running(source, ctx):
            await publish(
                broker,
                ("readers/r1/tag", json.dumps({"tag": "01", "at": "2023-11-14T22:13:20.123Z"})),
                ("readers/r1/tag", json.dumps({"tag": "02", "at": "yesterday"})),
            )
            await until(lambda: len(ctx.events) == 2)
    first, second = ctx.events
    assert first.occurred_at == T0
    assert first.received_at > T0
    assert second.occurred_at == second.received_at  # unreadable: the arrival time stands in
    assert source.counters.bad_time == 1
    assert [e["event"] for e in logs if e["event"] == "mqtt.bad_time"] == ["mqtt.bad_time"]


async def test_malformed_and_retained_messages_are_counted_logged_and_skipped(broker):
    await publish(broker, ("readers/old/tag", json.dumps({"tag": "AA"})), retain=True)
    source = build("ward", make_config(broker))
    ctx = RecordingContext()
    with capture_logs() as logs:
        async with running(source, ctx):
            await publish(
                broker,
                *[("readers/r1/tag", '{"tag": "P-SECRET-1"')] * 4,  # cut short
                ("readers/r1/tag", json.dumps({"card": "P-SECRET-2"})),
                ("readers/r1/tag", json.dumps(["P-SECRET-3"])),
                ("readers/r1/tag", json.dumps({"tag": True})),
                ("readers/r1/tag", b"\xff\xfeP-SECRET-4"),
                ("readers/r1/tag", json.dumps({"tag": "0A0B"})),
            )
            await until(lambda: len(ctx.events) == 1)

    assert ctx.tags() == ["0A0B"]
    assert source.counters.received == 10
    assert dict(source.counters.skipped) == {
        "retained": 1,
        "bad_json": 4,
        "missing_tag": 1,
        "not_an_object": 1,
        "bad_tag": 1,
        "not_utf8": 1,
    }
    skipped = [entry for entry in logs if entry["event"] == "mqtt.message_skipped"]
    assert [e["count"] for e in skipped if e["reason"] == "bad_json"] == [1, 2, 4]  # not each one
    assert len(skipped) == 8
    assert "P-SECRET" not in repr(logs)


async def test_broker_restart_logs_offline_once_and_online_once(broker):
    source = build("ward", make_config(broker))
    ctx = RecordingContext()
    with capture_logs() as logs:
        async with running(source, ctx):
            await publish(broker, ("readers/r1/tag", '{"tag": "01"}'))
            await until(lambda: len(ctx.events) == 1)

            await broker.stop()
            await until(lambda: source.counters.connect_failures >= 4)  # it keeps retrying
            assert not source.online
            await broker.start()
            await until(lambda: source.online)
            await publish(broker, ("readers/r1/tag", '{"tag": "02"}'))
            await until(lambda: len(ctx.events) == 2)

    assert ctx.tags() == ["01", "02"]
    states = [entry["event"] for entry in logs if entry["event"] in {"mqtt.online", "mqtt.offline"}]
    assert states == ["mqtt.online", "mqtt.offline", "mqtt.online"]
    assert source.counters.disconnects == 1
    assert source.counters.connects == 2


async def test_unreachable_broker_never_fails_the_source(tmp_path):
    broker = Mosquitto("mosquitto", tmp_path)  # never started: nothing listens on its port
    source = build("ward", make_config(broker))
    with capture_logs() as logs:
        task = asyncio.create_task(source.run(RecordingContext()))
        try:
            await until(lambda: source.counters.connect_failures >= 3)
            assert not task.done()
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    assert [entry["event"] for entry in logs] == ["mqtt.offline"]


async def test_messages_published_while_stopped_are_delivered_after_restart(broker):
    config = make_config(broker)
    async with running(build("ward", config), RecordingContext()):
        pass  # the first connection creates the persistent session and its subscription

    await publish(broker, ("readers/r1/tag", '{"tag": "A1"}'), ("readers/r2/tag", '{"tag": "A2"}'))
    await broker.restart()  # the session survives the broker too (persistence on disk)
    await publish(broker, ("readers/r1/tag", '{"tag": "A3"}'))

    ctx = RecordingContext()
    async with running(build("ward", config), ctx):
        await until(lambda: len(ctx.events) == 3)
    assert ctx.tags() == ["A1", "A2", "A3"]
    assert [e.payload["reader_id"] for e in ctx.events] == ["r1", "r2", "r1"]


async def test_message_is_acknowledged_only_after_emit_returned(broker):
    config = make_config(broker)
    blocked = RecordingContext(gate=asyncio.Event())
    async with running(build("ward", config), blocked):
        await publish(broker, ("readers/r1/tag", '{"tag": "B1"}'))
        await blocked.entered.wait()
    # The source stopped while the commit was pending: nothing was journaled nor acknowledged.
    assert blocked.events == []

    ctx = RecordingContext()
    async with running(build("ward", config), ctx):
        await until(lambda: len(ctx.events) == 1)
    assert ctx.tags() == ["B1"]  # redelivered by the broker

    # Once emitted it was acknowledged: a later session gets only what is new.
    ctx = RecordingContext()
    async with running(build("ward", config), ctx):
        await publish(broker, ("readers/r1/tag", '{"tag": "B2"}'))
        await until(lambda: len(ctx.events) == 1)
    assert ctx.tags() == ["B2"]


async def test_ack_lost_with_the_connection_means_redelivery(broker):
    config = make_config(broker)
    gate = asyncio.Event()
    ctx = RecordingContext(gate=gate)
    source = build("ward", config)
    async with running(source, ctx):
        await publish(broker, ("readers/r1/tag", '{"tag": "C1"}'))
        await ctx.entered.wait()
        await broker.restart()  # the connection dies while the commit is pending
        gate.set()  # the commit completes; its PUBACK has no connection to go to
        await until(lambda: len(ctx.events) == 2)
    assert ctx.tags() == ["C1", "C1"]  # at least once: the broker re-sent it


async def test_subscriptions_left_from_an_earlier_topic_are_skipped(broker):
    async with running(build("ward", make_config(broker, topic="old/+/tag")), RecordingContext()):
        pass
    ctx = RecordingContext()
    source = build("ward", make_config(broker))
    async with running(source, ctx):
        await publish(broker, ("old/r1/tag", '{"tag": "D1"}'), ("readers/r1/tag", '{"tag": "D2"}'))
        await until(lambda: len(ctx.events) == 1 and source.counters.received == 2)
    assert ctx.tags() == ["D2"]
    assert dict(source.counters.skipped) == {"foreign_topic": 1}


async def test_tls_verifies_the_broker_certificate_by_default(tmp_path):
    server = make_certificate(tmp_path / "pki")
    stranger = make_certificate(tmp_path / "other-pki")
    async with running_mosquitto(tmp_path / "mosquitto", tls=server) as broker:
        ctx = RecordingContext()
        source = build("ward", make_config(broker, tls=True, ca_file=str(server.ca)))
        async with running(source, ctx):
            async with aiomqtt.Client(
                broker.host, broker.port, tls_params=aiomqtt.TLSParameters(ca_certs=str(server.ca))
            ) as publisher:
                await publisher.publish("readers/r1/tag", '{"tag": "E1"}', qos=1)
            await until(lambda: len(ctx.events) == 1)
        assert ctx.tags() == ["E1"]

        untrusted = build("ward", make_config(broker, tls=True, ca_file=str(stranger.ca)))
        with capture_logs() as logs:
            task = asyncio.create_task(untrusted.run(RecordingContext()))
            try:
                await until(lambda: untrusted.counters.connect_failures >= 2)
                assert not untrusted.online
            finally:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        assert [entry["event"] for entry in logs] == ["mqtt.offline"]
        assert "CERTIFICATE_VERIFY_FAILED" in logs[0]["error"]

        unverified = make_config(broker, tls=True, ca_file=str(stranger.ca), tls_verify=False)
        async with running(build("ward", unverified), RecordingContext()):
            pass  # connected despite the unknown CA


def config_for_decode(**overrides: Any) -> MqttRfidConfig:
    return MqttRfidConfig.model_validate(
        {"type": "mqtt_rfid", "host": "localhost", "topic": "#", **overrides}
    )


@pytest.mark.parametrize(
    ("overrides", "topic", "payload", "expected"),
    [
        ({}, "site/r9/tag", b'{"tag": " 0a0b "}', Tap("site/r9/tag", "0A0B", "0a0b", 16)),
        ({"reader_field": "reader"}, "t", b'{"tag": "x1", "reader": 7}', Tap("7", "x1", "x1", 0)),
        ({"reader_field": "reader"}, "t", b'{"tag": "x1"}', Malformed("missing_reader")),
        ({"tag_field": "data.uid"}, "t", b'{"data": {"uid": "ABC"}}', Tap("t", "ABC", "ABC", 0)),
        ({"reader_from_topic": -1}, "a/b/r5", b'{"tag": "01"}', Tap("r5", "01", "01", 8)),
        (
            {"time_field": "ts"},
            "t",
            b'{"tag": "01", "ts": 1700000000123}',
            Tap("t", "01", "01", 8, T0),
        ),
        (
            {"time_field": "ts"},
            "t",
            b'{"tag": "01", "ts": 1700000000.123}',
            Tap("t", "01", "01", 8, T0),
        ),
        (
            {"time_field": "ts"},
            "t",
            b'{"tag": "01", "ts": "2023-11-15T06:13:20.123+08:00"}',
            Tap("t", "01", "01", 8, T0),  # +08:00 hospital clock
        ),
        (
            {"time_field": "ts"},
            "t",
            b'{"tag": "01", "ts": "2023-11-14 22:13:20"}',
            Tap("t", "01", "01", 8, None, True),
        ),
        ({"time_field": "ts"}, "t", b'{"tag": "01"}', Tap("t", "01", "01", 8, None, True)),
        ({"reader_from_topic": 5}, "a/b", b'{"tag": "01"}', Malformed("missing_reader")),
        (
            {"reader_topic_regex": "^x/(?P<reader>.+)$"},
            "y/1",
            b'{"tag": "01"}',
            Malformed("missing_reader"),
        ),
        ({"payload_format": "plain"}, "t", b"  \n", Malformed("missing_tag")),
        ({}, "t", b'{"tag": ""}', Malformed("bad_tag")),
        ({}, "t", b'{"tag": 1.5}', Malformed("bad_tag")),
        ({}, "t", b'{"tag": "0A\\u00000B"}', Malformed("bad_tag")),
        ({}, "t", b'{"tag": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", Malformed("bad_json")),
        ({"reader_field": "r"}, "t", b'{"tag": "01", "r": "r\\n1"}', Malformed("missing_reader")),
    ],
)
def test_decode(overrides, topic, payload, expected):
    assert decode(config_for_decode(**overrides), topic, payload) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"topic": "a/#/b"}, "not a valid MQTT topic filter"),
        ({"reader_topic_regex": "(?P<rdr>x)"}, "named group"),
        ({"reader_field": "r", "reader_from_topic": 1}, "at most one"),
        ({"reader_field": "r", "payload_format": "plain"}, "reader_field needs"),
        ({"time_field": "t", "payload_format": "plain"}, "time_field needs"),
        ({"password": "pw"}, "password needs username"),
        ({"ca_file": "ca.pem"}, "is not a readable file"),
        ({"tls_verify": False}, "need tls = true"),
        ({"qos": 2}, "Input should be 0 or 1"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ValidationError, match=message):
        config_for_decode(**overrides)
