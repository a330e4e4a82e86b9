"""The kit's request ladder against a real aiohttp server: answers, caps, and every failure."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.dispatch.outcomes import Retry
from agent.uplinks.kit.config import Connection
from agent.uplinks.kit.request import Answer, Request, client_session, exchange, fetch
from agent.uplinks.kit.tokens import TokenError
from tests.mosquitto import free_port, make_certificate

CONNECTION = Connection(timeout=5.0, max_body=300)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    """A platform that echoes, says busy with Retry-After, answers long, or never answers."""
    never = asyncio.Event()

    async def echo(request: web.Request) -> web.Response:
        form = await request.post()
        shown = dict(form) | dict(request.query) | {"auth": request.headers.get("auth", "")}
        return web.json_response(shown)

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy", headers={"Retry-After": "42"})

    async def long(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/busy", busy)
    app.router.add_get("/long", long)
    app.router.add_get("/hang", hang)
    test_server = TestServer(app)
    await test_server.start_server()
    try:
        yield test_server
    finally:
        never.set()
        await test_server.close()


async def ask(
    server: TestServer, path: str, connection: Connection = CONNECTION, **parts: object
) -> Answer | Retry:
    """exchange() of one request to `path` in a fresh session."""
    method = str(parts.pop("method", "GET"))

    async def prepare() -> Request:
        return Request(method, str(server.make_url(path)), **parts)  # type: ignore[arg-type]

    async with client_session(connection) as session:
        return await exchange(session, prepare, connection, hide=("s3cret",))


async def test_a_form_with_headers_and_query_reaches_the_platform(server: TestServer) -> None:
    answer = await ask(
        server, "/echo", method="POST", data={"a": "1"}, params={"b": "2"}, headers={"auth": "t"}
    )
    assert isinstance(answer, Answer) and answer.status == 200
    assert answer.text == '{"a": "1", "b": "2", "auth": "t"}'


async def test_the_answer_is_capped_and_retry_after_read(server: TestServer) -> None:
    long = await ask(server, "/long")
    assert isinstance(long, Answer) and long.text == "x" * 300
    busy = await ask(server, "/busy")
    assert busy == Answer(503, "busy", 42.0)


async def test_no_answer_in_time_is_a_retry_naming_the_setting(server: TestServer) -> None:
    quick = Connection(timeout=0.2)
    assert await ask(server, "/hang", quick) == Retry("no answer within request_timeout 0.2 s")


async def test_a_refused_connection_is_a_retry() -> None:
    port = free_port()

    async def prepare() -> Request:
        return Request("GET", f"http://127.0.0.1:{port}/")

    async with client_session(CONNECTION) as session:
        outcome = await exchange(session, prepare, CONNECTION)
    assert isinstance(outcome, Retry) and outcome.reason.startswith("ClientConnectorError")


async def test_a_refused_token_is_a_retry_that_never_quotes_a_secret() -> None:
    async def prepare() -> Request:
        raise TokenError("http://auth?secret=s3cret answered HTTP 500")

    async with client_session(CONNECTION) as session:
        outcome = await exchange(session, prepare, CONNECTION, hide=("s3cret",))
    assert outcome == Retry("http://auth?secret=*** answered HTTP 500")


async def test_fetch_reads_the_whole_answer_for_a_token_endpoint(server: TestServer) -> None:
    async with client_session(CONNECTION) as session:
        answer = await fetch(session, Request("GET", str(server.make_url("/long"))))
    assert len(answer.text) == 5000


async def test_tls_is_verified_by_default_and_a_ca_file_trusts_a_private_ca(
    tmp_path: Path,
) -> None:
    made = make_certificate(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(made.cert, made.key)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    try:
        refused = await ask(server, "/")
        assert isinstance(refused, Retry) and "Certificate" in refused.reason
        trusted = await ask(server, "/", Connection(ca_file=made.ca))
        assert trusted == Answer(200, "hello")
    finally:
        await server.close()
