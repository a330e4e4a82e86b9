"""Platform listeners: a plugin's HTTP routes on their own address and port, apart from the local
API, behind an address allow-list, a body limit, an optional Bearer token and signature check."""

from __future__ import annotations

import hmac
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from agent.endpoints import EMIT_KEY, QUERY_KEY, Emit, Endpoints, Query, Verify
from agent.errors import ConfigError
from agent.listener_config import PlatformListener
from agent.logs import peer_text
from agent.web.bodies import Refused
from agent.web.dashboard.sessions import as_bytes
from agent.web.guard import Handler, guard, runner_options, start_site

log = structlog.get_logger(__name__)
REFUSAL_LOG_WINDOW = 60.0  # seconds: one log line per source and reason in this time
MAX_TRACKED = 1024  # sources whose last refusal is remembered (bounded memory: oldest go first)
LISTENER_KEY: web.AppKey[str] = web.AppKey("listener", str)


@dataclass(slots=True)
class ListenerCounters:
    """Requests a listener answered and refused (by reason), for /metrics."""

    requests: int = 0
    refused: dict[str, int] = field(default_factory=dict)


class RefusalLog:
    """Refusals as warnings: the first per source and reason, then at most one per `window`
    seconds, which counts the ones held back (a scanner must not flood the log)."""

    def __init__(
        self,
        listener: str,
        window: float = REFUSAL_LOG_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener = listener
        self.window = window
        self.clock = clock
        self._last: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def refused(self, remote: str | None, reason: str, status: int, path: str) -> None:
        """Note one refusal; log it unless this source was logged for `reason` within window."""
        source = peer_text(remote or "unknown", 64)
        key = (source, reason)
        now = self.clock()
        logged_at, held_back = self._last.get(key, (float("-inf"), 0))
        if now - logged_at < self.window:
            self._last[key] = (logged_at, held_back + 1)
            return
        self._last.pop(key, None)
        self._last[key] = (now, 0)
        if len(self._last) > MAX_TRACKED:
            self._last.popitem(last=False)
        log.warning(
            "listener.refused",
            listener=self.listener,
            remote=source,
            reason=reason,
            status=status,
            path=peer_text(path),
            held_back=held_back,
        )


def make_listener_app(
    name: str,
    endpoints: Endpoints,
    emit: Emit,
    query: Query,
    counters: ListenerCounters | None = None,
) -> web.Application:
    """The application of listener `name`: its routes behind its access rules, nothing else."""
    settings = endpoints.settings
    refusals = RefusalLog(name)
    counted = counters if counters is not None else ListenerCounters()
    expected = settings.token.get_secret_value().encode() if settings.token else None
    # A source's verdict, kept: the allow-list is fixed for the app's life, and parsing the
    # address per request was 6 µs of each WADO image's ~0.25 ms (bench.results_sharing_wado).
    allowed: dict[str | None, bool] = {}

    def refuse(request: web.Request, reason: str, status: int, text: str) -> web.Response:
        counted.refused[reason] = counted.refused.get(reason, 0) + 1
        refusals.refused(request.remote, reason, status, request.path)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return web.json_response({"error": text}, status=status, headers=headers)

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        counted.requests += 1
        # Address, token, then size: a stranger learns nothing, not even the body limit.
        verdict = allowed.get(request.remote)
        if verdict is None:
            if len(allowed) >= MAX_TRACKED:  # bounded: a scan of many sources starts it afresh
                allowed.clear()
            verdict = allowed[request.remote] = settings.allows(request.remote)
        if not verdict:
            return refuse(request, "address", 403, "this address may not call this listener")
        if expected is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # Constant time: the comparison must not tell how much of a guess was right.
            if scheme != "Bearer" or not hmac.compare_digest(as_bytes(given), expected):
                return refuse(request, "token", 401, "missing or wrong token")
        oversize = f"the body is over {settings.max_body} bytes"
        length = request.content_length
        if length is not None and length > settings.max_body:
            return refuse(request, "size", 413, oversize)
        try:
            if endpoints.verify is not None:
                failed = await _verify(endpoints.verify, request)
                if failed is not None:
                    return refuse(request, "signature", *failed)
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:  # a chunked body, with no length to check first
            return refuse(request, "size", 413, oversize)

    app = web.Application(middlewares=[guard, access], client_max_size=settings.max_body)
    app[EMIT_KEY] = emit
    app[QUERY_KEY] = query
    app[LISTENER_KEY] = name
    for route in endpoints.routes:
        app.router.add_route(route.method, route.path, route.handler)
    if endpoints.close is not None:
        close = endpoints.close

        async def cleanup(_: web.Application) -> None:
            await close()

        app.on_cleanup.append(cleanup)
    return app


async def _verify(verify: Verify, request: web.Request) -> tuple[int, str] | None:
    """None if the platform's check passes, else the status and text to answer."""
    try:
        if await verify(request):
            return None
    except Refused as refused:  # e.g. 403 a key the platform does not know, 503
        return refused.status, "; ".join(refused.found)
    return 401, "the signature does not verify"


def tls_context(name: str, settings: PlatformListener) -> ssl.SSLContext | None:
    """The server TLS context of a listener with a certificate; ConfigError naming the setting
    if the certificate or key cannot be loaded."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as err:
        reason = err.strerror or getattr(err, "reason", None) or type(err).__name__
        raise ConfigError(
            [f"{name}.listener.tls_cert/tls_key: cannot load the certificate and key: {reason}"]
        ) from err
    return context


async def start_listener(
    name: str,
    endpoints: Endpoints,
    emit: Emit,
    query: Query,
    counters: ListenerCounters | None = None,
) -> web.AppRunner:
    """Serve listener `name` until the returned runner's `cleanup()`."""
    settings = endpoints.settings
    context = tls_context(name, settings)
    runner = web.AppRunner(
        make_listener_app(name, endpoints, emit, query, counters), **runner_options()
    )
    await runner.setup()
    try:
        await start_site(runner, settings.host, settings.port, f"{name}.listener", context)
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        "listener.started",
        listener=name,
        host=settings.host,
        port=settings.port,
        tls=context is not None,
        routes=len(endpoints.routes),
    )
    return runner
