"""What every local-API route module shares: the app keys and the error answers."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agent.events import Event

Emit = Callable[[Event], Awaitable[bool]]
Query = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
EMIT_KEY: web.AppKey[Emit] = web.AppKey("emit")
QUERY_KEY: web.AppKey[Query] = web.AppKey("query")


def problems(err: ValidationError) -> list[str]:
    """`field.path: reason` for each problem pydantic found."""
    return [
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in err.errors(include_url=False)
    ]


def invalid(found: list[str], status: int = 400) -> web.Response:
    """The answer to a request that failed validation: every problem, at once."""
    return web.json_response({"error": "invalid request", "problems": found}, status=status)
