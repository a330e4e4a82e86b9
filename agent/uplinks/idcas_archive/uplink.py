"""The IDCAS cloud archive (seed 002): the outbox sends print flags (7.9) and the daily
recognition statistics (6.2); HIS/PACS call the WebApis through `call`, synchronously, with the
same user token; `link` signs page URLs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from agent.dispatch.outcomes import Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.idcas_archive import links, webapi
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.idcas_archive.pages import PAGES
from agent.uplinks.idcas_archive.tokens import TokenChain
from agent.uplinks.kit.answers import DELIVERED, TOKEN, AnswerRules, classify, judge
from agent.uplinks.kit.request import TRANSPORT_ERRORS, Request, client_session, fetch
from agent.uplinks.kit.tokens import Token, TokenError
from agent.uplinks.kit.uplink import HttpPlatformUplink

PRINT_FLAG = "idcas.print_flag"
STATISTICS = "idcas.statistics"
STATISTICS_PATH = "api-idcas/observations/recognition"
H5_STYLES = ("h5", "h5plain")
COUNTS_WAIT = 600.0  # seconds: a day without counts looks again (posting them wakes it at once)


@dataclass(frozen=True, slots=True)
class Relayed:
    """A synchronous WebApi's result for HIS/PACS: HTTP status and JSON body."""

    status: int
    body: dict[str, Any]


class IdcasArchiveUplink(HttpPlatformUplink):
    """One session for the outbox and one for synchronous calls; one user token for both."""

    def __init__(self, name: str, config: IdcasArchiveConfig) -> None:
        secrets = [config.client_secret, config.password, config.des_key, config.md5_key]
        super().__init__(name, config, hide=[s.get_secret_value() for s in secrets])
        self.config = config
        self.rules = AnswerRules(delivered_codes=frozenset(config.success_codes))
        self.link_keys = config.link_keys()
        self.zone = ZoneInfo(config.timezone)
        self.chain = TokenChain(config, self._any_session, time.monotonic)
        self._calls: aiohttp.ClientSession | None = None

    async def _fetch_token(self, session: aiohttp.ClientSession) -> Token:
        return await self.chain.user_token()

    async def _acquire(self) -> Token:
        return await self.chain.user_token()

    async def _any_session(self) -> aiohttp.ClientSession:
        return self._session if self._session is not None else await self._call_session()

    async def _call_session(self) -> aiohttp.ClientSession:
        if self._calls is None:
            self._calls = client_session(self._connection)
        return self._calls

    async def close(self) -> None:
        """Close both sessions."""
        await super().close()
        if self._calls is not None:
            await self._calls.close()
            self._calls = None

    def link(self, page: str, values: Mapping[str, Any], user_token: str | None = None) -> str:
        """A signed URL of `page` now (LinkError naming what is wrong)."""
        return links.build(
            page,
            values,
            self.link_keys,
            portal=self.config.portal(),
            now=datetime.now(self.zone),
            user_token=user_token,
        )

    async def fresh_link(self, page: str, values: Mapping[str, Any]) -> str:
        """A signed URL of `page`; H5 pages get the user token (TokenError if none can be had)."""
        name = links.page_of(page).name
        token = None
        if PAGES[name].style in H5_STYLES:
            async with asyncio.timeout(self.config.webapi_timeout):
                token = await self.tokens.get()
        return self.link(name, values, token)

    async def call(self, name: str, values: Mapping[str, Any]) -> Relayed:
        """Call WebApi `name` for HIS/PACS within webapi_timeout: 200 with the platform's
        envelope, 502 when it refuses, 503 when it cannot be reached (LinkError: bad input)."""
        api = webapi.api_of(name)
        params = webapi.check(api, values)
        try:
            async with asyncio.timeout(self.config.webapi_timeout):
                status, text = await self._call_once(api, dict(params))
                if status == 401:  # expired early or revoked (dropped): a new token, once
                    status, text = await self._call_once(api, dict(params))
        except TimeoutError:
            return _unavailable(f"no answer within webapi_timeout {self.config.webapi_timeout:g} s")
        except TokenError as err:
            return _unavailable(_scrub(str(err), self._hide))
        except TRANSPORT_ERRORS as err:
            return _unavailable(type(err).__name__)
        verdict = classify(self.rules, status, text, name)
        envelope = {"code": verdict.envelope.code, "msg": verdict.envelope.message}
        envelope["data"] = _data(verdict.envelope.data, api, self.config.portal())
        if verdict.verdict == DELIVERED:
            return Relayed(200, envelope)
        if verdict.verdict == TOKEN or status >= 500 or status in (408, 429):
            return _unavailable(verdict.reason[:200])
        return Relayed(502, {"error": f"the platform refused: {verdict.reason[:300]}", **envelope})

    async def _call_once(self, api: webapi.Api, params: dict[str, str]) -> tuple[int, str]:
        token = await self.tokens.get()
        path = webapi.path_of(api, params)
        url = self._url(api.host, path)
        headers = {"Authorization": f"bearer {token}"}
        if api.method == "POST":
            body = json.dumps(params, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
            request = Request("POST", url, headers, body)
        else:
            request = Request("GET", url, headers, params=params)
        answer = await fetch(await self._call_session(), request, self._connection.max_body)
        if answer.status == 401:
            self.tokens.invalidate(token)
        return answer.status, answer.text

    def _url(self, host: str, path: str) -> str:
        if host == "doc_gateway":
            return self.config.doc_gateway(path)
        if host == "portal":
            return f"{self.config.portal()}/{path}"
        return self.config.gateway(path)

    async def send(self, message: OutboxMessage) -> Outcome:
        """7.9 print flag (a GET that changes state), 6.2 a day's statistics."""
        if message.kind == PRINT_FLAG:
            return await self._print_flag(message.payload)
        if message.kind == STATISTICS:
            return await self._statistics(message.payload)
        return Reject(f"idcas_archive sends no {message.kind} messages")

    async def _print_flag(self, payload: Mapping[str, Any]) -> Outcome:
        api = webapi.APIS["print-flag"]
        params = dict(payload.get("params") or {})
        for name in ("cancel_flag",):
            if params.get(name) in ("true", "false") and self.config.bool_style == "title":
                params[name] = params[name].title()
        url = self.config.doc_gateway(api.path)

        async def request() -> Request:
            token = await self.tokens.get()
            return Request("GET", url, {"Authorization": f"bearer {token}"}, params=params)

        answer = await self._exchange(request)
        if isinstance(answer, Retry):
            return answer
        return judge(self.rules, answer.status, answer.text, answer.retry_after, PRINT_FLAG)

    async def _statistics(self, payload: Mapping[str, Any]) -> Outcome:
        day = str(payload.get("day") or "")
        patients, stations = payload.get("patients_cnt"), payload.get("work_stations")
        if not isinstance(patients, int) or not isinstance(stations, int):
            return Retry(
                f"statistics of {day}: waiting for HIS to post the counts"
                " (POST /api/v1/idcas/statistics)",
                after=COUNTS_WAIT,
                deferred=True,
            )
        body: dict[str, Any] = {
            "org_code": self.config.org_code,
            "patients_cnt": patients,
            "work_stations": stations,
        }
        if self.config.statistics.date_field:
            body[self.config.statistics.date_field] = day
        url = self.config.gateway(STATISTICS_PATH)
        data = json.dumps(body, ensure_ascii=False).encode()

        async def request() -> Request:
            token = await self.tokens.get()
            headers = {"Authorization": f"bearer {token}", "Content-Type": "application/json"}
            return Request("POST", url, headers, data)

        answer = await self._exchange(request)
        if isinstance(answer, Retry):
            return answer
        return judge(self.rules, answer.status, answer.text, answer.retry_after, STATISTICS)


def _unavailable(reason: str) -> Relayed:
    return Relayed(503, {"error": f"the IDCAS platform is unavailable: {reason}"})


def _data(data: Any, api: webapi.Api, portal: str) -> Any:
    """4.9's address is relative ("域名仍需自行拼接"): the portal is put before it."""
    if api.name == "image-viewer" and isinstance(data, str) and data.startswith("/"):
        return f"{portal}{data}"
    return data


def _scrub(text: str, hide: tuple[str, ...]) -> str:
    for secret in hide:
        if secret:
            text = text.replace(secret, "***")
    return text


def build(name: str, config: Any) -> IdcasArchiveUplink:
    """The uplink of an [uplinks.<name>] type = "idcas_archive" table."""
    assert isinstance(config, IdcasArchiveConfig)
    return IdcasArchiveUplink(name, config)
