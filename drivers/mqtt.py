"""RFID readers that publish to an MQTT broker: subscribe, journal each tap, then acknowledge it.

Delivery. The subscription uses QoS 1 (by default) and a persistent session (a fixed client
id, clean session off), so the broker keeps what readers publish while the agent is down and
re-sends whatever was not acknowledged. A message is acknowledged (PUBACK) only after
`ctx.emit` returned, that is after the commit: a crash or disconnect before that makes the
broker deliver it again (at least once; a redelivery is a second `rfid.read`).

aiomqtt 2.x has no public manual-ack API (empicano/aiomqtt#345); it wraps paho-mqtt >= 2,
which has one (`manual_ack_set`, `ack`). `_PahoAck` reaches paho through aiomqtt's `_client`
attribute and checks it at start, so an aiomqtt upgrade that moves it fails loudly.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import ssl
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import aiomqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import AfterValidator, Field, model_validator

from agent.config import ConfigPath, PluginSection, Seconds, Secret
from agent.dispatch.policy import Backoff
from agent.events import Event, utcnow
from agent.vocabulary.patterns import compile_pattern
from agent.vocabulary.tags import code_read
from drivers.base import Driver, DriverContext

log = structlog.get_logger(__name__)


def _topic_filter(value: str) -> str:
    try:
        aiomqtt.Wildcard(value)
    except ValueError as err:
        raise ValueError(f"not a valid MQTT topic filter: {value!r}") from err
    return value


def _reader_regex(value: str) -> str:
    compile_pattern(value, "reader")
    return value


def _existing_file(value: Path) -> Path:
    if not value.is_file():
        raise ValueError(f"{value} is not a readable file")
    return value


class MqttRfidConfig(PluginSection):
    """[sources.<name>] type = "mqtt_rfid" """

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    ca_file: Annotated[ConfigPath, AfterValidator(_existing_file)] | None = None
    tls_verify: bool = True
    client_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    persistent_session: bool = True
    topic: Annotated[str, AfterValidator(_topic_filter)]
    # No QoS 2: paho keeps its half-done QoS 2 state in the client object we replace at each
    # reconnect, so a message whose ack was pending would be lost instead of re-sent.
    qos: Literal[0, 1] = 1
    payload_format: Literal["json", "plain"] = "json"
    tag_field: Annotated[str, Field(min_length=1)] = "tag"
    reader_field: Annotated[str, Field(min_length=1)] | None = None
    reader_from_topic: int | None = None
    reader_topic_regex: Annotated[str, AfterValidator(_reader_regex)] | None = None
    time_field: Annotated[str, Field(min_length=1)] | None = None
    ignore_retained: bool = True
    keepalive: Annotated[int, Field(ge=5, le=65535)] = 60
    connect_timeout: Seconds = 10.0
    reconnect_initial: Seconds = 1.0
    reconnect_max: Seconds = 60.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sources = [self.reader_field, self.reader_from_topic, self.reader_topic_regex]
        if sum(value is not None for value in sources) > 1:
            raise ValueError(
                "set at most one of reader_field, reader_from_topic, reader_topic_regex"
            )
        for key in ("reader_field", "time_field"):
            if getattr(self, key) is not None and self.payload_format != "json":
                raise ValueError(f'{key} needs payload_format = "json"')
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if (self.ca_file is not None or not self.tls_verify) and not self.tls:
            raise ValueError("ca_file and tls_verify need tls = true")
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        return self


@dataclass(frozen=True, slots=True)
class Malformed:
    """Why a message was skipped: a bounded reason, never its contents."""

    reason: str


@dataclass(frozen=True, slots=True)
class Tap:
    """One decoded tap: reader, canonical tag, code as sent, its bits, the device's time if any."""

    reader_id: str
    tag: str
    raw: str
    bits: int
    occurred_at: datetime | None = None
    bad_time: bool = False  # `time_field` was missing or unreadable: arrival time stands in


def _field(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):  # `data.tag` reaches into a nested object
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and value.strip().isprintable():
        return value.strip()
    return None  # not text, or text with control characters: never a tag or a reader id


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:  # epoch seconds, or milliseconds as many gateways send them
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        # A local time without its offset could be hours off: better the arrival time.
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    return None


def decode(config: MqttRfidConfig, topic: str, payload: bytes) -> Tap | Malformed:
    """Turn one message into a tap, or say why it is not one (sans I/O)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed("not_utf8")
    reader_value: Any = None
    time_value: Any = None
    if config.payload_format == "plain":
        raw = _text(text)
        if raw is None:
            return Malformed("missing_tag")
    else:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested beyond reason
            return Malformed("bad_json")
        if not isinstance(document, dict):
            return Malformed("not_an_object")
        tag_value = _field(document, config.tag_field)
        if tag_value is None:
            return Malformed("missing_tag")
        raw = _text(tag_value)
        if raw is None:
            return Malformed("bad_tag")
        if config.reader_field is not None:
            reader_value = _field(document, config.reader_field)
            if reader_value is None:
                return Malformed("missing_reader")
        if config.time_field is not None:
            time_value = _field(document, config.time_field)
    reader = _reader(config, topic, reader_value)
    if reader is None:
        return Malformed("missing_reader")
    read = code_read(raw)
    occurred_at = _time(time_value)
    bad_time = config.time_field is not None and occurred_at is None
    return Tap(reader, read.canonical(), raw, read.bits, occurred_at, bad_time)


def _reader(config: MqttRfidConfig, topic: str, value: Any) -> str | None:
    found = _reader_in(config, topic, value)
    return found if found is None or found.isprintable() else None


def _reader_in(config: MqttRfidConfig, topic: str, value: Any) -> str | None:
    if config.reader_field is not None:
        return _text(value)
    if config.reader_from_topic is not None:
        levels = topic.split("/")
        index = config.reader_from_topic
        return (levels[index] or None) if -len(levels) <= index < len(levels) else None
    if config.reader_topic_regex is not None:
        match = re.search(config.reader_topic_regex, topic)
        return (match["reader"] or None) if match is not None else None
    return topic


@dataclass(slots=True)
class MqttCounters:
    """What this source saw since it started."""

    received: int = 0
    emitted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0  # failed attempts and lost connections, each retried
    bad_time: int = 0  # emitted with the arrival time: `time_field` missing or unreadable


def _power_of_two(count: int) -> bool:
    return count & (count - 1) == 0  # log the 1st, 2nd, 4th, 8th…: a broken reader cannot flood


def _refused(code: int | ReasonCode) -> bool:
    return code.is_failure if isinstance(code, ReasonCode) else code >= 0x80


class _PahoAck:
    """Manual PUBACK through the paho client inside aiomqtt (see the module docstring)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        paho: Any = getattr(client, "_client", None)
        if not (hasattr(paho, "manual_ack_set") and hasattr(paho, "ack")):
            raise RuntimeError("this aiomqtt/paho-mqtt offers no manual acknowledgement")
        self._paho: Any = paho
        # Before connecting: a resumed session's queued messages arrive right after CONNACK.
        self._paho.manual_ack_set(True)

    def ack(self, message: aiomqtt.Message) -> None:
        """Send the PUBACK of a QoS 1 message; a dead connection means a redelivery later."""
        if message.qos == 1:
            self._paho.ack(message.mid, message.qos)


class MqttRfidSource(Driver):
    """Subscribes to the readers' topic; one `rfid.read` event per message, acked after commit."""

    def __init__(self, name: str, config: MqttRfidConfig, rng: random.Random | None = None) -> None:
        super().__init__(name)
        self.config = config
        self.client_id = config.client_id or f"edge-agent-{socket.gethostname()}-{name}"
        self.online = False
        self.counters = MqttCounters()
        self._backoff = Backoff(config.reconnect_initial, config.reconnect_max)
        self._rng = rng or random.Random()
        self._offline_logged = False
        self._last_error: str | None = None

    def is_online(self) -> bool:
        """True while subscribed to the broker."""
        return self.online

    def link_detail(self) -> str:
        """The broker, and why the source is not subscribed."""
        broker = f"mqtt://{self.config.host}:{self.config.port}"
        return broker if self.online else f"{broker}: {self._last_error or 'not connected yet'}"

    def stats(self) -> dict[str, int]:
        """Messages received and journaled, and those skipped by reason."""
        c = self.counters
        return {"received": c.received, "taps": c.emitted, **c.skipped, "bad_time": c.bad_time}

    async def run(self, ctx: DriverContext) -> None:
        """Connect, subscribe and consume until cancelled; reconnect with capped backoff."""
        attempts = 0
        while True:
            client = self._client()
            acks = _PahoAck(client)
            try:
                async with client:
                    granted = await client.subscribe(self.config.topic, qos=self.config.qos)
                    if any(_refused(code) for code in granted):
                        raise aiomqtt.MqttError(f"broker refused the subscription {granted}")
                    self._went_online()
                    attempts = 0
                    async for message in client.messages:
                        await self._handle(ctx, acks, message)
            except aiomqtt.MqttError as err:
                self._went_offline(err)
            attempts += 1
            await asyncio.sleep(self._backoff.delay(attempts, self._rng))

    def _client(self) -> aiomqtt.Client:
        config = self.config
        tls_params = None
        if config.tls:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(config.ca_file) if config.ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED if config.tls_verify else ssl.CERT_NONE,
            )
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            identifier=self.client_id,
            clean_session=not config.persistent_session,
            keepalive=config.keepalive,
            timeout=config.connect_timeout,
            tls_params=tls_params,
            tls_insecure=not config.tls_verify if config.tls else None,
        )

    async def _handle(self, ctx: DriverContext, acks: _PahoAck, message: aiomqtt.Message) -> None:
        self.counters.received += 1
        topic = message.topic.value
        if not message.topic.matches(self.config.topic):
            # A persistent session keeps the subscriptions of an earlier `topic` setting.
            self._skip("foreign_topic", topic)
        elif message.retain and self.config.ignore_retained:
            self._skip("retained", topic)
        else:
            payload = message.payload
            data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            tap = decode(self.config, topic, bytes(data))
            if isinstance(tap, Malformed):
                self._skip(tap.reason, topic)
            else:
                await self._emit(ctx, tap, topic)
        # Skipped messages are acknowledged too: the broker would only send them again.
        acks.ack(message)

    async def _emit(self, ctx: DriverContext, tap: Tap, topic: str) -> None:
        payload = {
            "reader_id": tap.reader_id,
            "tag": tap.tag,
            "raw": tap.raw,
            "protocol": "mqtt",
            "bits": tap.bits,
        }
        received_at = utcnow()
        occurred_at = tap.occurred_at or received_at
        event = Event(
            "rfid.read", self.name, payload, occurred_at=occurred_at, received_at=received_at
        )
        await ctx.emit(event)
        self.counters.emitted += 1
        if tap.bad_time:
            self.counters.bad_time += 1
            if _power_of_two(self.counters.bad_time):
                log.warning(
                    "mqtt.bad_time", source=self.name, topic=topic, count=self.counters.bad_time
                )

    def _skip(self, reason: str, topic: str) -> None:
        self.counters.skipped[reason] += 1
        count = self.counters.skipped[reason]
        if _power_of_two(count):
            # The topic names a reader; the payload may carry a patient code and is never logged.
            log.warning(
                "mqtt.message_skipped", source=self.name, reason=reason, topic=topic, count=count
            )

    def _went_online(self) -> None:
        self.counters.connects += 1
        if not self.online:
            self.online = True
            self._offline_logged = False
            log.info(
                "mqtt.online", source=self.name, broker=f"{self.config.host}:{self.config.port}"
            )

    def _went_offline(self, err: aiomqtt.MqttError) -> None:
        self.counters.connect_failures += 1
        if self.online:
            self.counters.disconnects += 1
        self.online = False
        self._last_error = str(err) or type(err).__name__
        if not self._offline_logged:
            self._offline_logged = True
            log.warning(
                "mqtt.offline",
                source=self.name,
                broker=f"{self.config.host}:{self.config.port}",
                error=str(err) or type(err).__name__,
            )


def build(name: str, config: MqttRfidConfig) -> MqttRfidSource:
    """Make the source from its validated config."""
    return MqttRfidSource(name, config)
