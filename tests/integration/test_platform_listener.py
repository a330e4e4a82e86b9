"""A platform listener refuses by address, size, token and signature, one log line per source and
reason; what it accepts is journaled; TLS and IPv6 work."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.endpoints import Endpoints, Verify
from agent.events import Event
from agent.journal.writer import Journal
from agent.listener_config import PlatformListener
from agent.web.listener import ListenerCounters, start_listener
from tests.mosquitto import make_certificate
from tests.platform_routes import ROUTES, free_port, notices_journaled, signature, signed_right

TOKEN = "platform-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def listener(host: str = "127.0.0.1", allow: str = "127.0.0.1/32", **keys: Any) -> PlatformListener:
    """Enabled settings on a free port of `host`, a 1 KiB body limit and TOKEN."""
    return PlatformListener.model_validate(
        {"enabled": True, "host": host, "port": free_port(host), "allow": [allow],
         "token": TOKEN, "max_body": 1024, **keys}
    )  # fmt: skip


@asynccontextmanager
async def serving(
    journal: Journal, settings: PlatformListener, verify: Verify | None = None
) -> AsyncIterator[ListenerCounters]:
    """The test routes on `settings`, emitting into `journal`, until the block ends."""

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    counters = ListenerCounters()
    runner = await start_listener(
        "platform", Endpoints(settings, ROUTES, verify), emit, journal.run, counters
    )
    try:
        yield counters
    finally:
        await runner.cleanup()


def url(settings: PlatformListener, path: str, scheme: str = "http") -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{host}:{settings.port}{path}"


def refusals(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == "listener.refused"]


async def test_a_client_outside_the_allow_list_gets_403_and_one_log_line(open_journal):
    journal = await open_journal.open()
    settings = listener(allow="127.0.0.1/32")
    # Linux routes all of 127/8 to lo: a client bound to 127.0.0.2 is another address.
    outside = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    with capture_logs() as logs:
        async with (
            serving(journal, settings) as counters,
            aiohttp.ClientSession(connector=outside) as client,
        ):
            for _ in range(3):
                async with client.post(
                    url(settings, "/notices"), json={"n": 1}, headers=HEADERS
                ) as answer:
                    assert answer.status == 403
    assert refusals(logs) == [
        {"event": "listener.refused", "listener": "platform", "remote": "127.0.0.2",
         "reason": "address", "status": 403, "path": "/notices", "held_back": 0,
         "log_level": "warning"}
    ]  # fmt: skip
    assert counters.refused == {"address": 3}
    assert await journal.run(notices_journaled) == 0


async def test_an_oversize_body_gets_413_with_or_without_a_length(open_journal):
    journal = await open_journal.open()
    settings = listener()

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b'"' + b"x" * 500 + b'"'

    with capture_logs() as logs:
        async with (
            serving(journal, settings, verify=signed_right) as counters,  # it reads the body
            aiohttp.ClientSession(headers=HEADERS) as client,
        ):
            async with client.post(url(settings, "/notices"), json={"x": "y" * 2000}) as answer:
                assert answer.status == 413
            async with client.post(
                url(settings, "/notices"),
                data=chunked(),
                headers={"Content-Type": "application/json"},
            ) as answer:
                assert answer.status == 413
    logged = refusals(logs)
    assert [(line["reason"], line["status"], line["remote"]) for line in logged] == [
        ("size", 413, "127.0.0.1")  # the second, within the minute, is held back
    ]
    assert counters.refused == {"size": 2}
    assert await journal.run(notices_journaled) == 0


async def test_a_wrong_or_missing_token_gets_401_and_is_never_logged(open_journal):
    journal = await open_journal.open()
    settings = listener()
    wrong = "wrong-token-9876543210"
    with capture_logs() as logs:
        async with serving(journal, settings), aiohttp.ClientSession() as client:
            for headers in ({"Authorization": f"Bearer {wrong}"}, {}):
                async with client.post(
                    url(settings, "/notices"), json={"n": 1}, headers=headers
                ) as answer:
                    assert answer.status == 401
                    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert [(line["reason"], line["status"]) for line in refusals(logs)] == [("token", 401)]
    assert wrong not in repr(logs) and TOKEN not in repr(logs)
    assert await journal.run(notices_journaled) == 0


async def test_an_accepted_request_is_journaled_and_read_back(open_journal):
    journal = await open_journal.open()
    settings = listener()
    with capture_logs() as logs:
        async with (
            serving(journal, settings) as counters,
            aiohttp.ClientSession(headers=HEADERS) as client,
        ):
            async with client.post(url(settings, "/notices"), json={"exam": "E1"}) as answer:
                assert answer.status == 201
                event_id = (await answer.json())["event_id"]
            async with client.get(url(settings, "/notices/count")) as answer:
                assert await answer.json() == {"notices": 1}
    stored = await journal.run(
        lambda conn: conn.execute(
            "SELECT kind, payload FROM events WHERE id = ?", (event_id,)
        ).fetchone()
    )
    assert tuple(stored) == ("platform.notice", '{"exam":"E1"}')
    assert refusals(logs) == []
    assert counters.requests == 2


async def test_the_signature_hook_refuses_a_wrong_signature_or_an_unknown_key(open_journal):
    journal = await open_journal.open()
    settings = listener()
    body = b'{"exam": "E2"}'
    with capture_logs() as logs:
        async with (
            serving(journal, settings, verify=signed_right) as counters,
            aiohttp.ClientSession(headers=HEADERS | {"Content-Type": "application/json"}) as client,
        ):
            bad = {"X-Signature": signature(b"something else")}
            async with client.post(url(settings, "/notices"), data=body, headers=bad) as answer:
                assert answer.status == 401
            unknown_key = {"X-Signature": signature(body), "X-Key-Id": "k9"}
            async with client.post(
                url(settings, "/notices"), data=body, headers=unknown_key
            ) as answer:
                assert answer.status == 403
                assert await answer.json() == {"error": "X-Key-Id: not a key of this platform"}
            good = {"X-Signature": signature(body)}
            async with client.post(url(settings, "/notices"), data=body, headers=good) as answer:
                assert answer.status == 201  # the hook read the body; the handler reads it again
    # The 403 is the same source and reason within the minute: counted, its log line held back.
    assert [(line["reason"], line["status"]) for line in refusals(logs)] == [("signature", 401)]
    assert counters.refused == {"signature": 2}
    assert await journal.run(notices_journaled) == 1


async def test_tls_serves_clients_that_verify_the_certificate(open_journal, tmp_path):
    journal = await open_journal.open()
    made = make_certificate(tmp_path / "tls")
    settings = listener(tls_cert=str(made.cert), tls_key=str(made.key))
    trusting = ssl.create_default_context(cafile=str(made.ca))
    async with serving(journal, settings), aiohttp.ClientSession(headers=HEADERS) as client:
        async with client.post(
            url(settings, "/notices", "https"), json={"n": 1}, ssl=trusting
        ) as answer:
            assert answer.status == 201
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.post(url(settings, "/notices", "https"), json={"n": 2})
    assert await journal.run(notices_journaled) == 1


async def test_ipv6_ranges_allow_and_refuse_by_address(open_journal):
    journal = await open_journal.open()
    for allow, status in (("::1/128", 201), ("fd00::/8", 403)):
        settings = listener(host="::1", allow=allow)
        async with (
            serving(journal, settings),
            aiohttp.ClientSession(headers=HEADERS) as client,
            client.post(url(settings, "/notices"), json={"n": 1}) as answer,
        ):
            assert answer.status == status
    assert await journal.run(notices_journaled) == 1
