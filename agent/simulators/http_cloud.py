"""A small JSON ingest cloud with OAuth2 tokens and fault switches; the generic uplink's peer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from agent.config import Secret
from agent.simulators.base import Counts, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled


class HttpCloudConfig(ControlOptions):
    """[simulators.<name>] type = "http_cloud" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8780
    client_id: str = ""
    client_secret: Secret | None = None  # when set, /ingest needs a bearer token from /token
    token_ttl: Annotated[float, Field(gt=0)] = 7200.0
    fail_every: Annotated[int, Field(ge=0)] = 0  # every Nth ingest answers 503 (0 = never)


@dataclass
class HttpFaults(Faults):
    """The shared switches, plus refusing records."""

    reject_containing: str | None = None  # answer 422 to bodies containing this text


@dataclass
class Received(Counts):
    """What the cloud accepted."""

    deliveries: Counter[str] = field(default_factory=Counter)  # Idempotency-Key -> times
    bodies: dict[str, Any] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # keys in first-arrival order


class HttpCloud(SimulatedCloud[Received]):
    """The simulator: `await start()`, point an uplink at `url`, inspect `received`."""

    faults: HttpFaults

    def __init__(self, name: str, config: HttpCloudConfig, state_dir: Path | None = None) -> None:
        faults = HttpFaults(fail_every=config.fail_every)
        super().__init__(name, config.host, config.port, faults, Received(), state_dir=state_dir)
        self.config = config

    @property
    def url(self) -> str:
        """Base URL of the running simulator."""
        return f"http://{self.host}:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        """/token (OAuth2 client credentials) and /ingest."""
        app.router.add_post("/token", self._token)
        app.router.add_post("/ingest", self._ingest)

    async def wait_for(self, keys: set[str]) -> None:
        """Return once every key in `keys` has been delivered at least once."""
        await self.wait_until(lambda r: keys <= r.deliveries.keys())

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = self.config.client_secret
        if expected is not None and (
            form.get("client_id") != self.config.client_id
            or form.get("client_secret") != expected.get_secret_value()
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = self.issue_token(None)  # valid until expire_tokens
        return web.json_response({"access_token": token, "expires_in": self.config.token_ttl})

    async def _ingest(self, request: web.Request) -> web.StreamResponse:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if self.config.client_secret is not None:
            auth = request.headers.get("Authorization", "")
            if not self.token_valid(auth.removeprefix("Bearer ")):
                return web.json_response({"error": "token expired"}, status=401)
        text = await request.text()
        if self.faults.reject_containing and self.faults.reject_containing in text:
            return web.json_response({"error": f"invalid record: {text[:200]}"}, status=422)
        try:
            body = json.loads(text)
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        key = request.headers.get("Idempotency-Key", "")
        async with self.arrived:
            if key not in self.received.deliveries:
                self.received.order.append(key)
                self.received.bodies[key] = body
            self.received.deliveries[key] += 1
            self.arrived.notify_all()
        return web.json_response({"code": 200, "msg": "ok"})


def build(name: str, config: HttpCloudConfig, state_dir: Path | None = None) -> HttpCloud:
    """Make the simulator from its validated config."""
    return attach(HttpCloud(name, config, state_dir), config)


async def serve(
    config: HttpCloudConfig,
    *,
    ready: Callable[[HttpCloud], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate http-cloud`)."""
    simulator = HttpCloud("http_cloud", config, state_dir)
    await run_until_cancelled(simulator, control, ready, control_ready)
