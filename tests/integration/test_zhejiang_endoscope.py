"""The zhejiang_endoscope uplink against its simulator, driven by a real Dispatcher and Journal."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.outcomes import Outcome, Retry
from agent.dispatch.policy import Backoff
from agent.events import Event
from agent.journal.alerts import open_alerts
from agent.journal.outbox import OutboxMessage
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from agent.simulators.zhejiang_endoscope import (
    ZhejiangEndoscopeSimulator,
    serve,
)
from agent.uplinks.kit.fields import render
from agent.uplinks.zhejiang_endoscope.codec import UNCLEANED
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.examples import EXAMPLES
from agent.uplinks.zhejiang_endoscope.sign import SCHEMES
from agent.uplinks.zhejiang_endoscope.uplink import ZhejiangEndoscopeUplink
from tests.dispatching import outbox_rows as rows
from tests.dispatching import run_dispatcher
from tests.helpers import ZHEJIANG_KEY, ZHEJIANG_SECRET, eventually

T = TypeVar("T")

UPLINK = "zhejiang"
KEY = ZHEJIANG_KEY
SECRET = ZHEJIANG_SECRET
UNIQUE = "330100123"
CREDIT = "12330000470000000X"
FAST = DispatchSettings(
    concurrency=4, backoff=Backoff(0.01, 0.05), breaker_threshold=1000, poll_interval=0.05
)
SLOW_BACKOFF = DispatchSettings(concurrency=4, backoff=Backoff(30.0, 60.0), breaker_threshold=2)
# Registration first, a cleaning before the use step: the order the domain queues them in.
ORDER = [
    "addEndoSocopeInfo",
    "addCardReaderInfo",
    "addCleanStepInfo",
    "uploadReadData",
    "uploadEnzymeWashData",
    "sterProcess",
    "cleaningEffectTesting",
    "endoscopeSave",
    "uploadUseStepData",
    "uploadDisinfectData",
    "rinseWater",
]


@dataclass(frozen=True)
class QueueRecords:
    """Test domain handler: event `zj.<endpoint>` → one message, payload = event payload."""

    name: str = "test:zhejiang"
    kinds: tuple[str, ...] = ("zj.*",)

    def handle(self, tx: Transaction, event: Event) -> None:
        tx.enqueue(
            uplink=UPLINK,
            kind=event.kind.removeprefix("zj."),
            order_key=event.source,
            dedupe_key=event.id,
            payload=event.payload,
        )


def record(endpoint: str, key: str = "scope-1", **changes: Any) -> Event:
    return Event(f"zj.{endpoint}", key, {**EXAMPLES[endpoint], **changes})


class Observed(ZhejiangEndoscopeUplink):
    """The real uplink, recording each outcome."""

    def __init__(self, config: ZhejiangEndoscopeConfig) -> None:
        super().__init__(UPLINK, config)
        self.outcomes: list[tuple[str, Outcome]] = []

    async def send(self, message: OutboxMessage) -> Outcome:
        result = await super().send(message)
        self.outcomes.append((message.kind, result))
        return result


@pytest.fixture
def platform(zhejiang_platform: ZhejiangEndoscopeSimulator) -> ZhejiangEndoscopeSimulator:
    return zhejiang_platform


def uplink_config(base_url: str, **overrides: Any) -> ZhejiangEndoscopeConfig:
    return ZhejiangEndoscopeConfig.model_validate(
        {
            "type": "zhejiang_endoscope",
            "base_url": base_url,
            "access_key": KEY,
            "access_secret": SECRET,
            "unique_code": UNIQUE,
            "credit_code": CREDIT,
            "request_timeout": 5.0,
            **overrides,
        }
    )


def dispatching(
    journal: Journal, uplink: ZhejiangEndoscopeUplink, settings: DispatchSettings = FAST
) -> AbstractAsyncContextManager[Dispatcher]:
    return run_dispatcher(journal, uplink, settings, grace=2.0)


async def settled(journal: Journal, state: str = "delivered") -> dict[str, dict[str, Any]]:
    found = await rows(journal)
    return found if found and all(r["state"] == state for r in found.values()) else {}


async def journal_with(open_journal: Any) -> Journal:
    journal: Journal = await open_journal.open(handlers=(QueueRecords(),))
    return journal


# --- every endpoint ---------------------------------------------------------------------------


async def test_every_endpoint_is_accepted_field_by_field(open_journal, platform):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url))
    events = [record(endpoint) for endpoint in ORDER]
    async with dispatching(journal, uplink):
        await journal.ingest(events)
        found = await eventually(lambda: settled(journal))

    assert [kind for kind, _ in uplink.outcomes] == ORDER  # one key: in order, once each
    assert platform.received.refused == []
    assert platform.received.tokens_issued == 1
    for event in events:
        endpoint = event.kind.removeprefix("zj.")
        [form] = platform.received.accepted[endpoint]
        sent = {k: render(v) for k, v in event.payload.items()}
        institution = {"uniqueCode": UNIQUE, "creditCode": CREDIT}
        auth = {"sign", "timestamp", "accessToken"}
        assert {k: v for k, v in form.items() if k not in auth} == {**sent, **institution}
        assert auth <= form.keys()  # default: token and timestamp on every endpoint
        assert form["sign"] == SCHEMES["md5_key_secret_timestamp"](
            KEY, SECRET, form["timestamp"], {}
        )
        assert found[event.id]["attempts"] == 1
        assert '"code": 200' in found[event.id]["response"]


@pytest.mark.parametrize("mode", ["field", "header", "omit"])
async def test_use_step_and_read_data_carry_the_token_as_configured(open_journal, platform, mode):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url, auth_where_unlisted=mode))
    async with dispatching(journal, uplink):
        await journal.ingest(
            [record("addEndoSocopeInfo"), record("uploadReadData"), record("uploadUseStepData")]
        )
        await eventually(lambda: settled(journal))
    for endpoint in ("uploadReadData", "uploadUseStepData"):
        [form] = platform.received.accepted[endpoint]
        assert ("accessToken" in form) is (mode == "field")
    assert platform.received.tokens_issued == 1  # addEndoSocopeInfo always needs one


# --- validation before sending ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "changes", "reason"),
    [
        ("uploadReadData", {"readerId": None}, "readerId: required field is missing"),
        ("rinseWater", {"wteNumber": "W" * 14}, "wteNumber: 14 characters, at most 13 allowed"),
        ("addCleanStepInfo", {"orderId": "first"}, "orderId: not a number (expected N..11)"),
        ("sterProcess", {"startTime": "08:10"}, "startTime: not a date-time"),
        ("endoscopeSave", {"storagetNumber": ["G01"]}, "storagetNumber: bad type list"),
        ("addEndoSocopeInfo", {"status": 2}, "status: must be one of 0, 1"),
        ("rinseWater", {"wteNo": "W01"}, "wteNo: not a field of rinseWater"),
    ],
)
async def test_a_table_violation_is_a_dead_letter_naming_the_field_without_a_request(
    open_journal, platform, endpoint, changes, reason
):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url))
    async with dispatching(journal, uplink):
        await journal.ingest([record(endpoint, **changes)])
        [row] = (await eventually(lambda: settled(journal, "dead"))).values()
    assert row["last_error"].startswith(f"{endpoint} not sent: {reason}")
    assert row["attempts"] == 1
    assert platform.received.requests == 0 and platform.received.tokens_issued == 0


# --- tokens -----------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_and_sends_resent_at_once(open_journal, platform):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url))
    async with dispatching(journal, uplink, SLOW_BACKOFF) as dispatcher:
        await journal.ingest([record("rinseWater", "water-0")])
        await eventually(lambda: settled(journal))
        assert platform.received.tokens_issued == 1

        platform.expire_tokens()
        burst = [record("rinseWater", f"water-{k}") for k in range(1, 5)]
        await journal.ingest(burst)  # one commit: leased and sent together
        found = await eventually(lambda: settled(journal))

    assert platform.received.tokens_issued == 2  # one refresh for four refused sends
    refused = [o for _, o in uplink.outcomes if isinstance(o, Retry) and o.reauthenticate]
    assert len(refused) == 4
    assert all(code == 401 for _, code, _ in platform.received.refused)
    assert all(found[e.id]["attempts"] == 1 for e in burst)  # resent within the same attempt
    assert dispatcher.counters.retried == 0
    assert len(platform.received.accepted["rinseWater"]) == 5


async def test_token_is_refreshed_before_it_expires(platform):
    now = [0.0]
    uplink = ZhejiangEndoscopeUplink(
        UPLINK,
        uplink_config(platform.base_url, token_refresh_margin=60),
        monotonic=lambda: now[0],
    )
    await uplink.open()
    try:
        message = OutboxMessage(
            1, UPLINK, "rinseWater", "k", "d", EXAMPLES["rinseWater"], 1, 0, None
        )
        for at, tokens in [(0.0, 1), (7139.0, 1), (7140.0, 2), (7141.0, 2)]:
            now[0] = at
            assert (await uplink.send(message)).__class__.__name__ == "Delivered"
            assert platform.received.tokens_issued == tokens, at
        assert platform.received.refused == []
    finally:
        await uplink.close()


async def test_wrong_credentials_or_scheme_keep_messages_queued(open_journal, platform):
    journal = await journal_with(open_journal)
    wrong = uplink_config(platform.base_url, sign_scheme="md5_key_timestamp_secret")
    async with dispatching(journal, Observed(wrong)):
        await journal.ingest([record("uploadReadData")])
        [row] = (
            await eventually(
                lambda: _when(rows(journal), lambda r: all(x["attempts"] >= 2 for x in r.values()))
            )
        ).values()
    assert row["state"] in ("pending", "inflight")  # still queued (maybe on its next attempt)
    assert "code 403: 签名错误" in row["last_error"]
    assert SECRET not in row["last_error"]


async def _when(value: Awaitable[T], check: Callable[[T], bool]) -> T | None:
    result = await value
    return result if result and check(result) else None


# --- transient failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"fail_next": 2}, "HTTP 503"),
        ({"busy_next": 2}, "platform busy: code 503"),
        ({"reset_next": 2}, "ServerDisconnectedError"),
    ],
)
async def test_5xx_busy_and_reset_are_retried_then_delivered(open_journal, platform, fault, error):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url))
    for name, value in fault.items():
        setattr(platform.faults, name, value)
    async with dispatching(journal, uplink):
        await journal.ingest([record("sterProcess")])
        [row] = (await eventually(lambda: settled(journal))).values()
    assert row["attempts"] == 3 and row["last_error"] is None
    failures = [o for _, o in uplink.outcomes if isinstance(o, Retry)]
    assert len(failures) == 2 and all(error in o.reason for o in failures), failures
    assert len(platform.received.accepted["sterProcess"]) == 1


async def test_a_timeout_is_retried(open_journal, platform):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url, request_timeout=0.1))
    platform.faults.delay = 0.5
    async with dispatching(journal, uplink):
        await journal.ingest([record("rinseWater")])
        await eventually(
            lambda: _when(rows(journal), lambda r: any(x["attempts"] >= 2 for x in r.values()))
        )
        platform.faults.delay = 0.0
        [row] = (await eventually(lambda: settled(journal))).values()
    assert row["attempts"] >= 2
    assert "no answer within request_timeout 0.1 s" in str(uplink.outcomes[0][1])


# --- use step before its cleaning -------------------------------------------------------------


async def test_use_step_before_its_cleaning_is_retried_until_the_cleaning_arrives(
    open_journal, platform
):
    journal = await journal_with(open_journal)
    uplink = Observed(uplink_config(platform.base_url, uncleaned_retry_interval=0.05))
    use = record("uploadUseStepData", "use:GIF-H290-01")
    clean = record("uploadReadData", "clean:GIF-H290-01")
    async with dispatching(journal, uplink):
        await journal.ingest([record("addEndoSocopeInfo", "registry"), use])
        async with asyncio.timeout(10):
            await platform.wait_until(lambda r: any(c == 404 for _, c, _ in r.refused))
        await journal.ingest([clean])
        found = await eventually(lambda: settled(journal))

    assert found[use.id]["attempts"] >= 2
    refusals = [o for k, o in uplink.outcomes if k == "uploadUseStepData" and isinstance(o, Retry)]
    assert refusals and all("not cleaned yet" in o.reason for o in refusals)
    [form] = platform.received.accepted["uploadUseStepData"]
    assert form["cleanId"] == platform.received.accepted["uploadReadData"][0]["cleanId"]


async def test_use_step_never_cleaned_becomes_a_dead_letter_past_the_window(open_journal, platform):
    journal = await journal_with(open_journal)
    config = uplink_config(
        platform.base_url, uncleaned_retry_window=1.0, uncleaned_retry_interval=0.05
    )
    async with dispatching(journal, Observed(config)):
        await journal.ingest([record("uploadUseStepData")])
        [row] = (await eventually(lambda: settled(journal, "dead"))).values()
    assert row["last_error"].startswith(f"{UNCLEANED}: endoscope number=GIF-H290-01")
    assert "该内镜未清洗" in row["response"]
    assert row["attempts"] >= 2
    # A scope used without a recorded cleaning is a compliance event: an alert, not only a
    # dead letter, journaled in the same transaction.
    (alert,) = await journal.run(open_alerts)
    assert alert["code"] == "scope_used_without_cleaning"
    assert alert["severity"] == "critical" and alert["message"] == row["last_error"]


async def test_a_use_step_waiting_for_its_cleaning_does_not_trip_the_breaker(
    open_journal, platform
):
    # The platform is healthy: a 404 "not cleaned yet" must not stall every other record.
    journal = await journal_with(open_journal)
    config = uplink_config(
        platform.base_url, uncleaned_retry_window=30.0, uncleaned_retry_interval=0.02
    )
    settings = DispatchSettings(
        concurrency=2, backoff=Backoff(0.01, 0.05), breaker_threshold=2, poll_interval=0.05
    )
    uplink = Observed(config)
    async with dispatching(journal, uplink, settings) as dispatcher:
        await journal.ingest([record("uploadUseStepData", "waiting")])
        async with asyncio.timeout(10):
            await platform.wait_until(lambda r: sum(c == 404 for _, c, _ in r.refused) >= 5)
        await journal.ingest([record("addEndoSocopeInfo", "registry")])
        async with asyncio.timeout(10):
            await platform.wait_accepted("addEndoSocopeInfo", 1)
        assert str(dispatcher.breaker.state) == "closed"


async def test_a_second_use_needs_a_new_cleaning(open_journal, platform):
    journal = await journal_with(open_journal)
    config = uplink_config(
        platform.base_url, uncleaned_retry_window=1.0, uncleaned_retry_interval=0.05
    )
    first = [record(e) for e in ("addEndoSocopeInfo", "uploadReadData", "uploadUseStepData")]
    again = record("uploadUseStepData", "scope-1", identityId="HIS0002")
    async with dispatching(journal, Observed(config)):
        await journal.ingest(first)
        await eventually(lambda: settled(journal))
        await journal.ingest([again])
        found = await eventually(
            lambda: _when(rows(journal), lambda r: r[again.id]["state"] == "dead")
        )
    assert found[again.id]["last_error"].startswith(UNCLEANED)


# --- the simulator on its own -----------------------------------------------------------------


async def test_the_simulator_rejects_what_the_seed_forbids(platform):
    async with aiohttp.ClientSession() as session:

        async def call(endpoint: str, form: dict[str, str]) -> dict[str, Any]:
            url = f"{platform.base_url}/endoscope/{endpoint}"
            async with session.post(url, data=form) as resp:
                assert resp.status == 200
                answer: dict[str, Any] = await resp.json()
                return answer

        ts = "1704067200000"
        params = {"timestamp": ts, "accessKey": KEY, "accessSecret": SECRET}
        sign = SCHEMES["md5_key_secret_timestamp"](KEY, SECRET, ts, {})
        async with session.get(
            f"{platform.base_url}/auth/getAccessToken", params={**params, "sign": sign}
        ) as resp:
            token = (await resp.json())["data"]["accessToken"]
        async with session.get(
            f"{platform.base_url}/auth/getAccessToken", params={**params, "sign": "0" * 32}
        ) as resp:
            assert await resp.json() == {"code": 403, "msg": "签名错误", "data": None}

        good = {k: render(v) for k, v in EXAMPLES["rinseWater"].items()}
        good |= {"uniqueCode": UNIQUE, "creditCode": CREDIT, "timestamp": ts, "sign": sign}
        assert (await call("rinseWater", {**good, "accessToken": token}))["code"] == 200
        assert await call("rinseWater", good) == {
            "code": 401,
            "msg": "token无效或已过期",
            "data": None,
        }
        missing = {k: v for k, v in good.items() if k != "wteNumber"} | {"accessToken": token}
        answer = await call("rinseWater", missing)
        assert answer["code"] == 400 and "wteNumber: required field is missing" in answer["msg"]
        long = {**good, "accessToken": token, "wteNumber": "W" * 14}
        assert "wteNumber: 14 characters" in (await call("rinseWater", long))["msg"]
        badsign = {**good, "accessToken": token, "sign": "0" * 32}
        assert (await call("rinseWater", badsign))["msg"] == "签名错误"
        platform.expire_tokens()
        assert (await call("rinseWater", {**good, "accessToken": token}))["code"] == 401
    assert len(platform.received.accepted["rinseWater"]) == 1
    assert [code for _, code, _ in platform.received.refused] == [401, 400, 400, 403, 401]


async def test_serve_runs_until_cancelled():
    started: asyncio.Queue[ZhejiangEndoscopeSimulator] = asyncio.Queue()
    task = asyncio.create_task(serve(port=0, ready=started.put_nowait))
    simulator = await asyncio.wait_for(started.get(), 5)
    url = f"{simulator.base_url}/endoscope/rinseWater"
    async with aiohttp.ClientSession() as session, session.post(url, data={}) as resp:
        assert (await resp.json())["code"] == 401
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_healthcheck_and_network_errors_never_show_the_secret(platform):
    up = ZhejiangEndoscopeUplink(UPLINK, uplink_config(platform.base_url))
    await up.open()
    try:
        assert await up.healthcheck()
    finally:
        await up.close()
    placeholder = socket.socket()  # bound, not listening: connections are refused
    placeholder.bind(("127.0.0.1", 0))
    try:
        down = ZhejiangEndoscopeUplink(
            UPLINK, uplink_config(f"http://127.0.0.1:{placeholder.getsockname()[1]}/openapi")
        )
        await down.open()
        try:
            assert not await down.healthcheck()
            message = OutboxMessage(
                1, UPLINK, "rinseWater", "k", "d", EXAMPLES["rinseWater"], 1, 0, None
            )
            result = await down.send(message)
        finally:
            await down.close()
    finally:
        placeholder.close()
    assert isinstance(result, Retry) and not result.reauthenticate
    assert SECRET not in result.reason and "Connect" in result.reason


async def test_held_uploads_are_answered_once_released(open_journal, platform):
    journal = await journal_with(open_journal)
    platform.faults.hold = True
    async with dispatching(journal, Observed(uplink_config(platform.base_url))):
        await journal.ingest([record("rinseWater", f"water-{k}") for k in range(3)])
        async with asyncio.timeout(10):
            await platform.wait_until(lambda r: r.held == 3)  # all three in flight at once
        assert platform.received.accepted["rinseWater"] == []
        platform.release_held()
        found = await eventually(lambda: settled(journal))
    assert [r["attempts"] for r in found.values()] == [1, 1, 1]
