"""A test platform's endpoints: a notice it posts (journaled) and a count it reads back."""

from __future__ import annotations

import hashlib
import hmac
import socket
import sqlite3
from typing import Any

from aiohttp import web

from agent.config import PluginSection
from agent.endpoints import EMIT_KEY, QUERY_KEY, Endpoints, RouteDef
from agent.events import Event
from agent.listener_config import PlatformListener
from agent.plugins import Plugin
from agent.web.bodies import Refused, read_json_object

NOTICE_KIND = "platform.notice"
SIGNING_KEY = b"test-signing-key"


async def post_notice(request: web.Request) -> web.Response:
    """POST /notices: journal the platform's notice; 201 with its event id once committed."""
    event = Event(NOTICE_KIND, "platform", await read_json_object(request))
    await request.app[EMIT_KEY](event)
    return web.json_response({"event_id": event.id}, status=201)


async def count_notices(request: web.Request) -> web.Response:
    """GET /notices/count: how many notices the journal holds (its read side)."""
    return web.json_response({"notices": await request.app[QUERY_KEY](notices_journaled)})


def notices_journaled(conn: sqlite3.Connection) -> int:
    """The number of notice events in the journal."""
    row = conn.execute("SELECT count(*) FROM events WHERE kind = ?", (NOTICE_KIND,)).fetchone()
    return int(row[0])


ROUTES = [
    RouteDef("POST", "/notices", post_notice),
    RouteDef("GET", "/notices/count", count_notices),
]


def signature(body: bytes) -> str:
    """The test platform's signature of a body: HMAC-SHA256, hex."""
    return hmac.new(SIGNING_KEY, body, hashlib.sha256).hexdigest()


async def signed_right(request: web.Request) -> bool:
    """The test platform's signature check (the `verify` hook): X-Signature over the body, by
    the key X-Key-Id names (403 when it names no key this test knows)."""
    if request.headers.get("X-Key-Id", "k1") != "k1":
        raise Refused(403, ["X-Key-Id: not a key of this platform"])
    given = request.headers.get("X-Signature", "")
    return hmac.compare_digest(given, signature(await request.read()))


class NoticesConfig(PluginSection):
    """[domains.NAME] of type platform_notices: only its listener."""

    listener: PlatformListener = PlatformListener()


def notices_endpoints(name: str, section: Any) -> Endpoints:
    """The endpoints the test plugin serves."""
    assert isinstance(section, NoticesConfig)
    return Endpoints(section.listener, ROUTES)


NOTICES_PLUGIN = Plugin(NoticesConfig, endpoints=notices_endpoints)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
