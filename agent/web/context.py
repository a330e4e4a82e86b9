"""What every local-API route module shares: the app keys and how validation problems read."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agent.endpoints import EMIT_KEY, QUERY_KEY, Emit, Query
from agent.web.bodies import Refused

ROW_ID = "[0-9]{1,18}"  # a journal row id in a path: longer would not fit SQLite's INTEGER
__all__ = ["EMIT_KEY", "QUERY_KEY", "ROW_ID", "Emit", "Query", "answer", "problems", "refused"]


def answer(data: Any, status: int = 200) -> web.Response:
    """A JSON answer in UTF-8 as it reads (Chinese text is not escaped to \\uXXXX)."""
    return web.json_response(data, status=status, dumps=_utf8_json)


_utf8_json = partial(json.dumps, ensure_ascii=False)


def problems(err: ValidationError) -> list[str]:
    """`field.path: reason` for each problem pydantic found."""
    return [
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in err.errors(include_url=False)
    ]


def refused(err: ValidationError) -> Refused:
    """A body that is well-formed but not what the route takes: 422 with every problem."""
    return Refused(422, problems(err))
