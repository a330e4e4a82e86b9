"""The control and inspection API of a simulated cloud, on its own (loopback) port.

A separate port, not a prefix on the platform's: "down" must really refuse the platform's
connections while the switches stay reachable, and the platform's URL space stays as faithful
as the simulator (a real platform answers /_sim with 404).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

import structlog
from aiohttp import web
from pydantic import Field

from agent.config import PluginSection
from agent.simulators.base import SimulatedCloud
from agent.simulators.ledger import VERDICTS

log = structlog.get_logger(__name__)
PREFIX = "/_sim"
DOWN_MODES = ("refuse", "unavailable")
_SIM: web.AppKey[SimulatedCloud[Any]] = web.AppKey("simulator", SimulatedCloud)
S = TypeVar("S", bound=SimulatedCloud[Any])


class ControlOptions(PluginSection):
    """The control API of a simulator the agent serves ([simulators.<name>])."""

    control_host: str = "127.0.0.1"
    control_port: Annotated[int | None, Field(ge=0, le=65535)] = None  # None: no control API


def attach(simulator: S, options: ControlOptions) -> S:
    """`simulator`, serving its control API as `options` say (if they give a port)."""
    if options.control_port is not None:
        server = ControlServer(simulator, options.control_host, options.control_port)
        simulator.companions.append(server)
    return simulator


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def control_app(simulator: SimulatedCloud[Any]) -> web.Application:
    """The /_sim routes driving `simulator`."""
    app = web.Application()
    app[_SIM] = simulator
    app.router.add_get(PREFIX, _status)
    app.router.add_post(f"{PREFIX}/down", _down)
    app.router.add_post(f"{PREFIX}/up", _up)
    app.router.add_get(f"{PREFIX}/faults", _faults)
    app.router.add_post(f"{PREFIX}/faults", _set_faults)
    app.router.add_post(f"{PREFIX}/tokens/expire", _expire)
    app.router.add_get(f"{PREFIX}/received", _received)
    app.router.add_post(f"{PREFIX}/reset", _reset)
    return app


def status_of(simulator: SimulatedCloud[Any]) -> dict[str, Any]:
    """What GET /_sim answers: name, port, down state, switches, counts."""
    return {
        "name": simulator.name,
        "port": simulator.port,
        "down": simulator.down,
        "faults": asdict(simulator.faults),
        "counts": {
            "requests": simulator.received.requests,
            "held": simulator.received.held,
            "tokens_issued": simulator.received.tokens_issued,
            "received": len(simulator.ledger.arrivals),
        },
        "state_dir": str(simulator.state_dir) if simulator.state_dir else None,
    }


async def _status(request: web.Request) -> web.Response:
    return _json(status_of(request.app[_SIM]))


async def _object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is {}), else 400."""
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body is not a JSON object")
    return body


async def _down(request: web.Request) -> web.Response:
    mode = (await _object(request)).get("mode", "refuse")
    if mode not in DOWN_MODES:
        return _json({"error": f"mode: one of {', '.join(DOWN_MODES)}"}, 400)
    simulator = request.app[_SIM]
    await simulator.go_down(mode)
    return _json(status_of(simulator))


async def _up(request: web.Request) -> web.Response:
    simulator = request.app[_SIM]
    await simulator.come_up()
    return _json(status_of(simulator))


async def _faults(request: web.Request) -> web.Response:
    return _json(asdict(request.app[_SIM].faults))


async def _set_faults(request: web.Request) -> web.Response:
    """Set the named switches (all or nothing); unknown names and wrong types are a 400."""
    simulator = request.app[_SIM]
    faults = simulator.faults
    current = asdict(faults)
    changes = await _object(request)
    problems = [f"{name}: no such switch" for name in changes if name not in current]
    problems += [
        f"{name}: expected {type(current[name]).__name__}, got {json.dumps(value)}"
        for name, value in changes.items()
        if name in current and not _fits(current[name], value)
    ]
    if problems:
        return _json({"error": "; ".join(problems), "switches": sorted(current)}, 400)
    for name, value in changes.items():
        setattr(faults, name, float(value) if isinstance(current[name], float) else value)
    if changes.get("hold") is False:
        simulator.release_held()
    log.info("simulator.faults", simulator=simulator.name, switches=sorted(changes))
    return _json(asdict(faults))


def _fits(current: Any, value: Any) -> bool:
    """Whether `value` may replace the switch's `current` value (same JSON type)."""
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, int | float) and value >= 0
    if isinstance(current, int):
        return isinstance(value, int) and value >= 0
    return value is None or isinstance(value, str)


async def _expire(request: web.Request) -> web.Response:
    request.app[_SIM].expire_tokens()
    return _json({"expired": True})


async def _received(request: web.Request) -> web.Response:
    """?kind=&verdict=&after=SEQ&limit=N: the arrivals, oldest first; `last` is the newest seq."""
    query = request.query
    verdict = query.get("verdict")
    if verdict is not None and verdict not in VERDICTS:
        return _json({"error": f"verdict: one of {', '.join(VERDICTS)}"}, 400)
    try:
        after = int(query.get("after", "0"))
        limit = int(query.get("limit", "1000"))
    except ValueError:
        return _json({"error": "after and limit are integers"}, 400)
    ledger = request.app[_SIM].ledger
    found = ledger.select(query.get("kind"), verdict, after)[:limit]
    last = ledger.arrivals[-1].seq if ledger.arrivals else 0
    return _json({"received": [asdict(a) for a in found], "last": last})


async def _reset(request: web.Request) -> web.Response:
    simulator = request.app[_SIM]
    await simulator.reset()
    return _json(status_of(simulator))


class ControlServer:
    """The control API of one simulator on host:port (0: a free port)."""

    def __init__(self, simulator: SimulatedCloud[Any], host: str, port: int) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The control API's base URL (ends with /_sim)."""
        return f"http://{self.host}:{self.port}{PREFIX}"

    async def start(self) -> None:
        """Listen; warn when the switches are reachable from beyond this machine."""
        if not _loopback(self.host):
            log.warning("simulator.control_not_loopback", host=self.host)
        self._runner = web.AppRunner(control_app(self.simulator), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        log.info("simulator.control_listening", simulator=self.simulator.name, url=self.url)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def run_until_cancelled(
    simulator: S,
    control: tuple[str, int] | None,
    ready: Callable[[S], None] | None,
    control_ready: Callable[[ControlServer], None] | None = None,
) -> None:
    """Serve `simulator` (and its control API on `control`, if given) until cancelled."""
    server = ControlServer(simulator, *control) if control is not None else None
    await simulator.start()
    try:
        if server is not None:
            await server.start()
        if ready is not None:
            ready(simulator)
        if server is not None and control_ready is not None:
            control_ready(server)
        await asyncio.Event().wait()
    finally:
        if server is not None:
            await server.stop()
        await simulator.stop()
