"""Last line of defence of the HTTP listener: refusals answered, crashes and garbage logged once."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from agent.errors import AgentError, UnstorableEventError
from agent.logs import peer_text
from agent.web.bodies import Refused
from agent.web.context import answer
from agent.web.dashboard.sessions import is_dashboard_route

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_LOGGED_FIELDS = 8


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer Refused with its status and problems; a client gone mid-body, or a handler bug, is
    one log line (warning, error) instead of aiohttp's traceback."""
    try:
        return await handler(request)
    except Refused as refused:
        return refusal(request, refused.status, refused.found)
    except UnstorableEventError:
        # Validation should have caught it; the journal's own check is the last word.
        return refusal(request, 422, ["body: a value that cannot be stored (out of range)"])
    except web.HTTPRequestEntityTooLarge:
        log.warning("web.refused", path=peer_text(request.path), status=413, fields=["body"])
        raise
    except web.HTTPException as err:
        if err.status < 400 or is_dashboard_route(request) or not request.path.startswith("/api/"):
            raise
        # A client of the JSON API reads JSON, also for "no such route" (a malformed id).
        return answer({"error": err.reason}, status=err.status)
    except ConnectionError as err:  # the peer closed the connection while sending its body
        log.warning("web.client_gone", path=peer_text(request.path), error=type(err).__name__)
        return web.Response(status=400, text="the request was cut short")
    except Exception as err:
        log.error(
            "web.handler_crashed",
            path=peer_text(request.path),
            error=type(err).__name__,
            at=_where(err),
        )
        return answer({"error": "internal error; see the agent's log"}, status=500)


def refusal(request: web.Request, status: int, found: list[str]) -> web.Response:
    """The answer to a request that cannot be taken: every problem, at once, and one log line
    naming the fields (never their values: they may name a patient)."""
    fields = sorted({problem.split(":", 1)[0] for problem in found})
    log.warning(
        "web.refused",
        path=peer_text(request.path),
        status=status,
        fields=[peer_text(f, 40) for f in fields[:MAX_LOGGED_FIELDS]],
    )
    if is_dashboard_route(request):
        return web.Response(status=status, text="\n".join(found), content_type="text/plain")
    return answer({"error": "invalid request", "problems": found}, status=status)


def _where(err: BaseException) -> str:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"


class ServerLog(logging.Logger):
    """aiohttp's server logger: a request it could not even parse (an oversized header, TLS
    bytes on the plain port) is one warning line, not an error with a traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **_: Any) -> None:
        """One warning: what aiohttp could not handle, from whom; never the bytes themselves."""
        err = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        remote = args[0] if args and "%s" in str(msg) else None
        log.warning(
            "web.unreadable_request",
            error=type(err).__name__ if err else "unknown",
            status=getattr(err, "code", None),
            remote=peer_text(remote) if remote is not None else None,
        )

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        """As `exception`: aiohttp logs errors only with a traceback."""
        self.exception(msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        """With a traceback (non-HTTP bytes, e.g. TLS, as a first request): as `exception`."""
        if kwargs.get("exc_info"):
            self.exception(msg, *args, **kwargs)
        else:
            super().debug(msg, *args, **kwargs)


def server_log() -> ServerLog:
    """The logger to hand aiohttp's request handler (runner option `logger`)."""
    logger = ServerLog("aiohttp.server.guarded")
    logger.parent = logging.getLogger("aiohttp.server")  # its debug lines go where they went
    return logger


def runner_options() -> dict[str, Any]:
    """What an AppRunner of the local API is made with: no access log, the quiet server log."""
    return {"access_log": None, "logger": server_log()}


async def start_site(
    runner: web.AppRunner, host: str, port: int, setting: str, ssl_context: Any = None
) -> None:
    """Listen on host:port for `runner`; a port in use, an address not of this machine or a
    privileged port is an AgentError naming `setting` (e.g. "[api] port") and the fix."""
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            why = (
                f"{host}:{port} is already in use by another program: stop it or choose another"
                f" port (which program: ss -ltnp 'sport = :{port}')"
            )
        elif err.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this machine (ip -br addr lists them)"
        elif err.errno == errno.EACCES:
            why = f"port {port} needs privileges the service does not have: use 1024 or above"
        else:
            raise
        raise AgentError(f"{setting}: cannot listen: {why}") from err
