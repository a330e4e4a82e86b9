"""A small JSON ingest cloud with OAuth2 tokens and fault switches; the generic uplink's peer."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from agent.config import PluginSection, Secret


class HttpCloudConfig(PluginSection):
    """[simulators.<name>] type = "http_cloud" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8780
    client_id: str = ""
    client_secret: Secret | None = None  # when set, /ingest needs a bearer token from /token
    token_ttl: Annotated[float, Field(gt=0)] = 7200.0
    fail_every: Annotated[int, Field(ge=0)] = 0  # every Nth ingest answers 503 (0 = never)


@dataclass
class Faults:
    """Switches tests flip to make the cloud misbehave."""

    fail_next: int = 0  # answer the next N ingests with 503
    fail_every: int = 0
    reject_containing: str | None = None  # answer 422 to bodies containing this text
    delay: float = 0.0  # seconds before answering (timeouts)
    reset_next: int = 0  # drop the connection without an answer
    hold: bool = False  # keep every ingest waiting until release_held()


@dataclass
class Received:
    """What the cloud accepted."""

    deliveries: Counter[str] = field(default_factory=Counter)  # Idempotency-Key -> times
    bodies: dict[str, Any] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # keys in first-arrival order
    tokens_issued: int = 0
    requests: int = 0
    held: int = 0  # ingests that waited at the hold switch


class HttpCloud:
    """The simulator: `await start()`, point an uplink at `url`, inspect `received`."""

    def __init__(self, name: str, config: HttpCloudConfig) -> None:
        self.name = name
        self.config = config
        self.faults = Faults(fail_every=config.fail_every)
        self.received = Received()
        self.arrived = asyncio.Condition()
        self._tokens: set[str] = set()
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = config.port

    @property
    def url(self) -> str:
        """Base URL of the running simulator."""
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        """Listen on the configured host and port (0 picks a free port)."""
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/ingest", self._ingest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        if self.config.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening."""
        self._stopping.set()
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        self._tokens.clear()

    def release_held(self) -> None:
        """Answer every held ingest, and hold no more."""
        self.faults.hold = False
        self._released.set()

    async def wait_held(self, count: int) -> None:
        """Return once `count` ingests are waiting at the hold switch."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.received.held >= count)

    async def wait_for(self, keys: set[str]) -> None:
        """Return once every key in `keys` has been delivered at least once."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: keys <= self.received.deliveries.keys())

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = self.config.client_secret
        if expected is not None and (
            form.get("client_id") != self.config.client_id
            or form.get("client_secret") != expected.get_secret_value()
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        self.received.tokens_issued += 1
        return web.json_response({"access_token": token, "expires_in": self.config.token_ttl})

    async def _ingest(self, request: web.Request) -> web.StreamResponse:
        self.received.requests += 1
        faults = self.faults
        if faults.delay:
            with contextlib.suppress(TimeoutError):  # a held answer ends early at stop()
                await asyncio.wait_for(self._stopping.wait(), faults.delay)
        if faults.hold:
            async with self.arrived:
                self.received.held += 1
                self.arrived.notify_all()
            await self._released.wait()
        if faults.reset_next > 0:
            faults.reset_next -= 1
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()  # never reaches the client: the socket is gone
        if self.config.client_secret is not None:
            auth = request.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") not in self._tokens:
                return web.json_response({"error": "token expired"}, status=401)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return web.json_response({"error": "busy"}, status=503)
        if faults.fail_every and self.received.requests % faults.fail_every == 0:
            return web.json_response({"error": "busy"}, status=503)
        text = await request.text()
        if faults.reject_containing and faults.reject_containing in text:
            return web.json_response({"error": f"invalid record: {text[:200]}"}, status=422)
        key = request.headers.get("Idempotency-Key", "")
        async with self.arrived:
            if key not in self.received.deliveries:
                self.received.order.append(key)
                self.received.bodies[key] = await request.json()
            self.received.deliveries[key] += 1
            self.arrived.notify_all()
        return web.json_response({"code": 200, "msg": "ok"})


def build(name: str, config: HttpCloudConfig) -> HttpCloud:
    """Make the simulator from its validated config."""
    return HttpCloud(name, config)
