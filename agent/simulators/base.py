"""What every cloud simulator shares: serving, going down, fault switches, what it received."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from agent.simulators.ledger import Ledger, Verdict, load_state, save_state

log = structlog.get_logger(__name__)

DownMode = Literal["refuse", "unavailable"]
BODY_LIMIT = 4096  # characters of a non-JSON body kept in the received list
_SECRET_FIELD = re.compile(r"secret|password|license", re.IGNORECASE)
GARBLED = '{"code": 200, "msg": "ok", "data": {'  # a 200 answer cut short: not JSON
PORTAL = "<!DOCTYPE html><html><body><h1>Gateway login</h1></body></html>"  # a proxy's page, 200


@dataclass
class Faults:
    """Switches that make a simulated cloud misbehave (each simulator adds its platform's own)."""

    fail_next: int = 0  # answer the next N requests with HTTP fail_status
    fail_every: int = 0  # answer every Nth request with HTTP fail_status (0 = never)
    fail_status: int = 503
    delay: float = 0.0  # seconds before answering (timeouts); ends early at stop()
    hang_next: int = 0  # never answer the next N requests (the client times out)
    garble_next: int = 0  # answer the next N requests HTTP 200 with a body cut short
    portal_next: int = 0  # answer the next N requests HTTP 200 with an HTML page
    reset_next: int = 0  # drop the connection of the next N requests without an answer
    hold: bool = False  # keep every request waiting until release_held()
    # An outage that recovers: HTTP 503 to every request while
    # outage_after <= seconds since start() < outage_after + outage_for (0 = none).
    outage_after: float = 0.0
    outage_for: float = 0.0

    def in_outage(self, elapsed: float) -> bool:
        """Whether `elapsed` seconds after the start fall in the outage window."""
        return self.outage_for > 0 and (
            self.outage_after <= elapsed < self.outage_after + self.outage_for
        )


@dataclass
class Counts:
    """What every simulator counts; each simulator's `received` extends it."""

    requests: int = 0  # data requests, whatever their fate
    held: int = 0  # requests that waited at the hold switch
    tokens_issued: int = 0


R = TypeVar("R", bound=Counts)


class Companion(Protocol):
    """Something served beside a simulator, started after it and stopped before it."""

    async def start(self) -> None:
        """Start serving."""

    async def stop(self) -> None:
        """Stop serving."""


class SimulatedCloud(ABC, Generic[R]):
    """A fake platform served by aiohttp: `await start()`, inspect `received`, `await stop()`.

    With a `state_dir`, tokens, the platform's memory and the received list outlive a restart.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        faults: Faults,
        received: R,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.faults = faults
        self.received = received
        self.state_dir = state_dir
        self.ledger = Ledger(state_dir)
        self.down: DownMode | None = None
        self.arrived = asyncio.Condition()  # notified whenever `received` changes
        self._defaults = dataclasses.replace(faults)
        self._saved = load_state(state_dir)
        self._tokens: dict[str, float | None] = dict(self._saved.get("tokens") or {})
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        self._unhang = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._started_at = time.monotonic()
        self._outage_logs: list[asyncio.TimerHandle] = []
        self.companions: list[Companion] = []  # e.g. its control API (control.attach)

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the platform's endpoints."""

    def judge(self, status: int, answer: Any) -> tuple[Verdict, int | None, str]:
        """The platform's verdict on one of its JSON answers (override: its own codes)."""
        if status < 300:
            return "accepted", status, ""
        transient = status >= 500 or status in (408, 429)
        return ("failed" if transient else "refused"), status, _words(answer)

    def memory(self) -> dict[str, Any]:
        """What the platform remembers beyond the received list (saved in the state folder)."""
        return {}

    def restore(self, memory: dict[str, Any]) -> None:
        """Take back what `memory()` returned before a restart."""

    def forget(self) -> None:
        """Forget the platform's memory (reset)."""

    async def start(self) -> None:
        """Listen on the configured host and port (0 picks a free port, kept across down/up)."""
        self.restore(self._saved.get("memory") or {})
        app = web.Application(middlewares=[self._observe])
        self.add_routes(app)
        # handler_cancellation: a request the client gave up on (a timeout) ends, and is listed.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await self._listen()
        self._started_at = time.monotonic()
        if self.faults.outage_for > 0:
            loop = asyncio.get_running_loop()
            start, end = self.faults.outage_after, self.faults.outage_after + self.faults.outage_for
            self._outage_logs = [
                loop.call_later(start, self._log_outage, "simulator.outage_started"),
                loop.call_later(end, self._log_outage, "simulator.outage_over"),
            ]
        for companion in self.companions:
            await companion.start()

    async def _listen(self) -> None:
        """Open the platform's listeners (a simulator with more ports extends it)."""
        assert self._runner is not None
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def _unlisten(self) -> None:
        """Close the platform's listeners; connections made later are refused."""
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()

    def _log_outage(self, event: str) -> None:
        log.warning(event, simulator=self.name, seconds=self.faults.outage_for)

    async def stop(self) -> None:
        """Stop listening; held and delayed answers end now."""
        self._stopping.set()
        self._released.set()
        for companion in self.companions:
            await companion.stop()
        for handle in self._outage_logs:
            handle.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def go_down(self, mode: DownMode = "refuse") -> None:
        """Refuse connections (refuse) or answer every request HTTP 503 (unavailable)."""
        await self.come_up()
        if mode == "refuse":
            await self._unlisten()
        self.down = mode
        log.warning("simulator.down", simulator=self.name, mode=mode)

    async def come_up(self) -> None:
        """Answer again, on the same ports."""
        if self.down is None:
            return
        if self.down == "refuse":
            await self._listen()
        self.down = None
        log.info("simulator.up", simulator=self.name)

    async def reset(self) -> None:
        """Forget what was received and remembered, come up, and restore the fault switches."""
        await self.come_up()
        for switch in dataclasses.fields(self.faults):
            setattr(self.faults, switch.name, getattr(self._defaults, switch.name))
        self._unhang.set()
        self._unhang = asyncio.Event()
        async with self.arrived:
            fresh = type(self.received)()
            for item in dataclasses.fields(self.received):
                setattr(self.received, item.name, getattr(fresh, item.name))
            self.arrived.notify_all()
        self.forget()
        self.ledger.clear()
        self.save()

    def issue_token(self, ttl: float | None) -> str:
        """A new token valid for `ttl` seconds (None: until expire_tokens)."""
        token = secrets.token_hex(16)
        self._tokens[token] = None if ttl is None else time.time() + ttl
        self.received.tokens_issued += 1
        self.save()
        return token

    def token_valid(self, token: str | None) -> bool:
        """Whether `token` was issued and has not expired."""
        if token is None or token not in self._tokens:
            return False
        expiry = self._tokens[token]
        return expiry is None or time.time() < expiry

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        self._tokens.clear()
        self.save()

    def save(self) -> None:
        """Write tokens and memory to the state folder (if any)."""
        now = time.time()
        live = {t: e for t, e in self._tokens.items() if e is None or e > now}
        save_state(self.state_dir, {"tokens": live, "memory": self.memory()})

    def record(
        self,
        kind: str,
        verdict: Verdict,
        code: int | None,
        message: str,
        *,
        key: str | None = None,
        body: Any = None,
    ) -> None:
        """Add one arrival to the received list (for arrivals the HTTP middleware cannot see)."""
        self.ledger.add(kind, verdict, code, message, key=key, body=body)

    def release_held(self) -> None:
        """Answer every held request, and hold no more."""
        self.faults.hold = False
        self._released.set()

    async def wait_until(self, check: Callable[[R], bool]) -> None:
        """Return once `check(received)` holds (checked whenever it changes)."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: check(self.received))

    async def wait_held(self, count: int) -> None:
        """Return once `count` requests are waiting at the hold switch."""
        await self.wait_until(lambda r: r.held >= count)

    async def misbehave(self, request: web.Request) -> web.Response | None:
        """Count the request and apply the switches; a response to send instead, or None."""
        self.received.requests += 1
        faults = self.faults
        if faults.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), faults.delay)
        if faults.hold:
            async with self.arrived:
                self.received.held += 1
                self.arrived.notify_all()
            await self._released.wait()
        if faults.hang_next > 0:
            faults.hang_next -= 1
            unhang = self._unhang
            await _first(self._stopping.wait(), unhang.wait())
            _cut(request)
        if faults.reset_next > 0:
            faults.reset_next -= 1
            _cut(request)
        if faults.in_outage(time.monotonic() - self._started_at):
            return web.json_response({"error": "service unavailable (outage)"}, status=503)
        if faults.garble_next > 0:
            faults.garble_next -= 1
            return web.Response(text=GARBLED, content_type="application/json")
        if faults.portal_next > 0:
            faults.portal_next -= 1
            return web.Response(text=PORTAL, content_type="text/html")
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return web.json_response({"error": "busy"}, status=faults.fail_status)
        if faults.fail_every and self.received.requests % faults.fail_every == 0:
            return web.json_response({"error": "busy"}, status=faults.fail_status)
        return None

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Apply the down state, then record the request and the platform's verdict."""
        if self.down == "refuse":
            _cut(request)  # a connection kept alive from before the outage
        kind = request.path.rstrip("/").rsplit("/", 1)[-1]
        key = request.headers.get("Idempotency-Key")
        body = await _body_of(request)
        if self.down == "unavailable":
            self.record(kind, "failed", 503, "down (unavailable)", key=key, body=body)
            return web.json_response({"error": "service unavailable (down)"}, status=503)
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            self.record(kind, "dropped", None, "no answer: the client gave up", key=key, body=body)
            raise
        except web.HTTPException as err:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.record(kind, "dropped", None, "connection cut, no answer", key=key, body=body)
            else:
                self.record(kind, "failed", err.status, err.reason, key=key, body=body)
            raise
        except Exception as err:  # a simulator bug: listed, then aiohttp answers 500
            self.record(kind, "failed", 500, f"simulator error: {err!r}", key=key, body=body)
            raise
        verdict, code, message = self._verdict_of(response)
        self.record(kind, verdict, code, message, key=key, body=body)
        return response

    def _verdict_of(self, response: web.StreamResponse) -> tuple[Verdict, int | None, str]:
        raw = response.body if isinstance(response, web.Response) else None
        try:
            answer = json.loads(raw) if isinstance(raw, bytes) else None
        except ValueError:
            return "failed", response.status, "malformed answer (not JSON)"
        return self.judge(response.status, answer)


def _cut(request: web.Request) -> None:
    """Drop the connection without an answer."""
    if request.transport is not None:
        request.transport.abort()
    raise web.HTTPServiceUnavailable()  # never reaches the client: the socket is gone


async def _first(*waits: Awaitable[Any]) -> None:
    """Return when the first of `waits` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _body_of(request: web.Request) -> Any:
    """The request's JSON, form fields or query (secrets masked), else its text, cut short."""
    if not request.body_exists:
        return _masked(dict(request.query))
    text = await request.text()  # aiohttp keeps the bytes: the handler reads them again
    if request.content_type == "application/json":
        with contextlib.suppress(ValueError):
            return json.loads(text)
    if request.content_type == "application/x-www-form-urlencoded":
        return _masked(dict(parse_qsl(text, keep_blank_values=True)))
    return text[:BODY_LIMIT]


def _masked(fields: dict[str, str]) -> dict[str, str]:
    return {k: "***" if _SECRET_FIELD.search(k) else v for k, v in fields.items()}


def _words(answer: Any) -> str:
    """A short message out of an error answer."""
    if isinstance(answer, dict):
        for key in ("error", "msg", "message"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return "" if answer is None else json.dumps(answer, ensure_ascii=False)[:200]
