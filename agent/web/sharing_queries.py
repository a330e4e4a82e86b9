"""Local API for doctors' stations: queries to the results-sharing platform (seed 001 检查4-7,
检验7-9), answered synchronously; 404 when no results_sharing uplink is configured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol

from aiohttp import web

from agent.web.bodies import only_query, read_json_object
from agent.web.context import QUERY_KEY, Query, answer

PATH = "/api/v1/sharing/queries/{name}"
PDF_PATH = "/api/v1/sharing/queries/{name}/pdf"


class Queries(Protocol):
    """What the wiring hands over: ask one query; close at shutdown."""

    async def ask(
        self, name: str, params: Mapping[str, Any], run: Query
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, answer) of one query (`run`: the journal, where answers are kept)."""
        ...

    async def pdf(
        self, name: str, params: Mapping[str, Any], run: Query
    ) -> tuple[int, bytes | dict[str, Any]]:
        """(HTTP status, the PDF's bytes or an error answer) of one PDF query."""
        ...

    async def close(self) -> None:
        """Release the HTTP session."""
        ...


def add_sharing_query_route(app: web.Application, queries: Queries | None) -> None:
    """Register the query route (the app's token middleware protects it)."""
    app.router.add_post(PATH, partial(post_query, queries))
    app.router.add_post(PDF_PATH, partial(post_pdf_query, queries))
    if queries is not None:
        close: Callable[[], Awaitable[None]] = queries.close

        async def cleanup(_: web.Application) -> None:
            await close()

        app.on_cleanup.append(cleanup)


async def post_query(queries: Queries | None, request: web.Request) -> web.Response:
    """POST the query's parameters (JSON object of text): 200 {source, data}, 404, 422, 502, 503."""
    only_query(request)
    params = await read_json_object(request)
    if queries is None:
        return answer({"error": "no results_sharing uplink is configured"}, status=404)
    status, body = await queries.ask(request.match_info["name"], params, request.app[QUERY_KEY])
    return answer(body, status=status)


async def post_pdf_query(queries: Queries | None, request: web.Request) -> web.Response:
    """POST a PDF query's parameters: 200 application/pdf (the platform's report PDF), 404 no
    such query or no PDF, 422, 502 the platform refused or gave no usable PDF, 503."""
    only_query(request)
    params = await read_json_object(request)
    if queries is None:
        return answer({"error": "no results_sharing uplink is configured"}, status=404)
    status, body = await queries.pdf(request.match_info["name"], params, request.app[QUERY_KEY])
    if isinstance(body, bytes):
        return web.Response(body=body, content_type="application/pdf")
    return answer(body, status=status)
