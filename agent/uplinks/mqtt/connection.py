"""Broker URLs, aiomqtt clients with the agent's TLS/auth conventions, one watched connection.

The conventions are those of the MQTT input (drivers/mqtt.py): TLS verifies the broker's
certificate against the system CAs or `ca_file`; `tls_verify = false` accepts any certificate
and host name; a password is a Secret and needs a username.

aiomqtt 2.5 leaves the socket of a connect whose CONNACK never came open, and finishes its
keepalive task only a loop turn after a disconnect. `_release` reaches into aiomqtt/paho
(`_client._sock_close`, `_misc_task`) to close and await both, so nothing outlives a
connection; it degrades to doing nothing if an upgrade moves them.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from pydantic import SecretStr

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class Broker:
    """A broker address from an `mqtt://host[:port]` or `mqtts://host[:port]` URL."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: str) -> Broker:
    """Read a broker URL; raise ValueError (never echoing the URL, it may hold a password)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("must be mqtt://host[:port] or mqtts://host[:port]")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in the url: set username and password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be mqtt[s]://host[:port], without a path or query")
    if not parts.hostname:
        raise ValueError("names no host")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError("has an invalid port") from err
    if port == 0:
        raise ValueError("has an invalid port")
    return Broker(parts.hostname, port or DEFAULT_PORTS[scheme], scheme == "mqtts")


def existing_file(value: Path) -> Path:
    """Accept a path to a readable file (a CA bundle); raise ValueError otherwise."""
    if not value.is_file():
        raise ValueError(f"{value} is not a readable file")
    return value


def make_client(
    broker: Broker,
    *,
    client_id: str,
    username: str | None,
    password: SecretStr | None,
    ca_file: Path | None,
    tls_verify: bool,
    keepalive: int,
    timeout: float,
    max_inflight: int,
) -> aiomqtt.Client:
    """A clean-session MQTT 3.1.1 client; `timeout` bounds the TCP connect and each answer."""
    tls_params = None
    if broker.tls:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=str(ca_file) if ca_file else None,
            cert_reqs=ssl.CERT_REQUIRED if tls_verify else ssl.CERT_NONE,
        )
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=username,
        password=password.get_secret_value() if password else None,
        identifier=client_id,
        clean_session=True,
        keepalive=keepalive,
        timeout=timeout,
        tls_params=tls_params,
        tls_insecure=not tls_verify if broker.tls else None,
        # paho holds back publications beyond its in-flight window (default 20): each send
        # must be on the wire while its PUBACK timeout runs.
        max_inflight_messages=max_inflight,
    )
    # aiomqtt does not expose paho's TCP connect timeout (fixed 5 s otherwise).
    paho: Any = getattr(client, "_client", None)
    if hasattr(paho, "connect_timeout"):
        paho.connect_timeout = timeout
    return client


def describe(err: BaseException) -> str:
    """A short reason for a log line or a Retry: the error's text or, failing that, its type."""
    cause = err.__cause__ or err.__context__
    text = str(err) or type(err).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


class Connection:
    """One connected client; `alive` until the broker goes away or stops answering."""

    def __init__(self, client: aiomqtt.Client, on_lost: Callable[[str], None]) -> None:
        self._client = client
        self._on_lost = on_lost
        self._watcher: asyncio.Task[None] | None = None
        self._stale = False
        self._reason = "closed"

    @classmethod
    async def open(cls, client: aiomqtt.Client, on_lost: Callable[[str], None]) -> Connection:
        """Connect (CONNACK received) and watch the connection; raise MqttError on failure."""
        try:
            await client.__aenter__()
        except aiomqtt.MqttError:
            await _release(client)
            raise
        connection = cls(client, on_lost)
        connection._watcher = asyncio.create_task(connection._watch(), name="mqtt-uplink-watch")
        return connection

    @property
    def alive(self) -> bool:
        """Whether the connection is still usable."""
        return not self._stale and self._watcher is not None and not self._watcher.done()

    async def _watch(self) -> None:
        try:
            # Nothing is subscribed: iterating is how aiomqtt reports a lost connection.
            async for _ in self._client.messages:
                pass
        except aiomqtt.MqttError as err:
            self._lost(describe(err))

    def _lost(self, reason: str) -> None:
        if not self._stale:
            self._stale = True
            self._reason = reason
            self._on_lost(reason)

    async def publish(self, topic: str, payload: bytes, *, retain: bool, within: float) -> None:
        """Publish at QoS 1; return once the PUBACK came within `within` s, else raise MqttError."""
        assert self._watcher is not None, "open() first"
        sending = asyncio.create_task(
            self._client.publish(topic, payload, qos=1, retain=retain, timeout=math.inf)
        )
        try:
            done, _ = await asyncio.wait(
                (sending, self._watcher), timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not sending.done():
                sending.cancel()
                await asyncio.wait((sending,))
        if sending in done:
            sending.result()  # raises what the publication raised
            return
        if self._watcher in done:
            raise aiomqtt.MqttError(f"connection lost before the PUBACK: {self._reason}")
        # A live TCP connection that stops answering may be half-open: reconnect next time.
        reason = f"no PUBACK within {within:g} s"
        self._lost(reason)
        raise aiomqtt.MqttError(reason)

    async def close(self) -> None:
        """Disconnect politely if still connected; bounded by the client's timeout."""
        self._stale = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait((self._watcher,))
        try:
            await self._client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass  # it timed out saying goodbye: the connection is gone either way
        await _release(self._client)


async def _release(client: aiomqtt.Client) -> None:
    """Close the client's socket if still open and wait for its keepalive task to end."""
    paho: Any = getattr(client, "_client", None)
    close_socket = getattr(paho, "_sock_close", None)
    if callable(close_socket):
        close_socket()
    misc = getattr(client, "_misc_task", None)
    if isinstance(misc, asyncio.Task) and not misc.done():
        misc.cancel()
        await asyncio.wait((misc,), timeout=1.0)
