"""Publish outbox messages to an MQTT broker at QoS 1; Delivered only after the PUBACK.

One connection is kept across sends and opened lazily by the first send (or healthcheck)
that needs it; a lost connection is noticed at once (and logged once) and replaced by the
next send. Nothing is buffered here: a send while the broker is away is a Retry, and the
journal keeps the message until the dispatcher tries again.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import aiomqtt
import structlog

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.dispatch.uplink import Uplink
from agent.journal.outbox import OutboxMessage
from agent.uplinks.mqtt.config import MqttUplinkConfig
from agent.uplinks.mqtt.connection import Connection, describe, make_client
from agent.uplinks.mqtt.topics import UnpublishableError, encode

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class MqttUplinkCounters:
    """What this uplink did since it started."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0  # established connections that were lost
    published: int = 0


class MqttUplink(Uplink):
    """A broker that hospital systems or a fleet follow; topics under `topic_prefix`."""

    def __init__(self, name: str, config: MqttUplinkConfig) -> None:
        super().__init__(name)
        self.config = config
        self.broker = config.broker
        self.client_id = config.client_id or f"edge-agent-{socket.gethostname()}-uplink-{name}"
        self.counters = MqttUplinkCounters()
        self._retain_kinds = frozenset(config.retain_kinds)
        self._connection: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._online: bool | None = None  # None: not tried yet

    async def send(self, message: OutboxMessage) -> Outcome:
        """Publish at QoS 1: PUBACK delivered, unpublishable reject, anything else retry."""
        try:
            publication = encode(message, self.config.topic_prefix, self._retain_kinds)
        except UnpublishableError as err:
            return Reject(str(err))
        try:
            connection = await self._connected()
            await connection.publish(
                publication.topic,
                publication.payload,
                retain=publication.retain,
                within=self.config.connect_timeout,
            )
        except aiomqtt.MqttError as err:
            return Retry(f"{self.broker}: {describe(err)}")
        except ValueError as err:  # paho refuses what no broker could take (e.g. > 256 MB)
            return Reject(f"not publishable: {err}")
        self.counters.published += 1
        return Delivered()

    async def healthcheck(self) -> bool:
        """Whether the broker accepts a connection (the one sends use is kept open)."""
        try:
            await self._connected()
        except aiomqtt.MqttError:
            return False
        return True

    async def close(self) -> None:
        """Disconnect from the broker; a connection attempt under way is let finish first."""
        if self._connecting is not None:
            await asyncio.wait((self._connecting,))
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _connected(self) -> Connection:
        if self._connection is not None and self._connection.alive:
            return self._connection
        if self._connecting is None:
            connecting = asyncio.create_task(self._connect(), name=f"mqtt-connect-{self.name}")
            connecting.add_done_callback(_retrieve)
            self._connecting = connecting
        # Shielded: a send that times out must not abandon aiomqtt half-way through a connect
        # (its executor thread would finish it unseen); concurrent sends share one attempt.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Connection:
        try:
            stale, self._connection = self._connection, None
            if stale is not None:
                await stale.close()
            config = self.config
            client = make_client(
                self.broker,
                client_id=self.client_id,
                username=config.username,
                password=config.password,
                ca_file=config.ca_file,
                tls_verify=config.tls_verify,
                keepalive=config.keepalive,
                timeout=config.connect_timeout,
                max_inflight=config.concurrency,
            )
            try:
                connection = await Connection.open(client, self._lost)
            except aiomqtt.MqttError as err:
                self.counters.connect_failures += 1
                self._went_offline(describe(err))
                raise
            self._connection = connection
            self.counters.connects += 1
            self._went_online()
            return connection
        finally:
            self._connecting = None

    def _lost(self, reason: str) -> None:
        self.counters.disconnects += 1
        self._went_offline(reason)

    def _went_online(self) -> None:
        if self._online is not True:
            self._online = True
            log.info("mqtt.uplink_connected", uplink=self.name, broker=str(self.broker))

    def _went_offline(self, reason: str) -> None:
        if self._online is not False:
            self._online = False
            log.warning("mqtt.uplink_lost", uplink=self.name, broker=str(self.broker), error=reason)


def _retrieve(task: asyncio.Task[Connection]) -> None:
    # Every waiter may have been cancelled: read the outcome so asyncio does not report it.
    if not task.cancelled():
        task.exception()


def build(name: str, config: MqttUplinkConfig) -> MqttUplink:
    """Make the uplink from its validated config."""
    return MqttUplink(name, config)
