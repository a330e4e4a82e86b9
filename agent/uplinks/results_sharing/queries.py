"""Queries for doctors' stations (seed 001 检查4-7, 检验7-9), asked synchronously through the
local API: the parameters mapped by the query's map, the platform's `data` answered; answers of
a query with cache_seconds (lab data, L223) are kept and answered locally meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from agent.dispatch.outcomes import Delivered, Reject
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.mapping import answer_path
from agent.uplinks.results_sharing.uplink import ResultsSharingUplink

log = structlog.get_logger(__name__)
PARAMS = frozenset(
    {"id_card_no", "patient_name", "start_date", "end_date", "other_org_code", "exam_no",
     "report_no", "study_uid", "domain", "region_code"}
)  # fmt: skip
MAX_CACHED = 2000


class SharingQueries:
    """`ask(name, params) -> (HTTP status, answer)` for the local API."""

    def __init__(
        self, name: str, config: ResultsSharingConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.uplink = ResultsSharingUplink(name, config)
        self.queries = config.mapping.platform.queries
        self.data_key = config.mapping.platform.answer.data
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._opened = False
        self._lock = asyncio.Lock()

    async def ask(self, name: str, params: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """200 {source, data}; 404 an unknown query; 422 bad parameters; 502 the platform's
        refusal (its words); 503 the platform cannot be reached."""
        query = self.queries.get(name)
        if query is None:
            return 404, {"error": f"no query {name!r}", "queries": sorted(self.queries)}
        problems = [f"{k}: not a parameter ({', '.join(sorted(PARAMS))})" for k in params
                    if k not in PARAMS]  # fmt: skip
        problems += [f"{k}: must be text" for k, v in params.items() if not isinstance(v, str)]
        if problems:
            return 422, {"error": "bad parameters", "problems": problems}
        key = f"{name}:{json.dumps(dict(params), sort_keys=True, ensure_ascii=False)}"
        cached = self._cache.get(key)
        if query.cache_seconds and cached is not None and cached[0] > self.clock():
            log.info("results_sharing.query", query=name, source="local")
            return 200, {"source": "local", "data": cached[1]}
        async with self._lock:
            if not self._opened:
                await self.uplink.open()
                self._opened = True
        outcome, answer = await self.uplink.ask(query.map, dict(params))
        log.info("results_sharing.query", query=name, outcome=type(outcome).__name__)
        if isinstance(outcome, Reject) and " not sent: " in outcome.reason:
            found = outcome.reason.split(" not sent: ", 1)[1].split("; ")
            return 422, {"error": "bad parameters", "problems": found}
        if isinstance(outcome, Reject):
            return 502, {"error": "the platform refused the query", "reason": outcome.reason}
        if not isinstance(outcome, Delivered):
            return 503, {"error": "the platform cannot be reached", "reason": outcome.reason}
        data = answer_path(answer, self.data_key)
        if query.cache_seconds:
            self._cache[key] = (self.clock() + query.cache_seconds, data)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return 200, {"source": "platform", "data": data}

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._opened:
            await self.uplink.close()


def queries(name: str, config: ResultsSharingConfig) -> SharingQueries:
    """The queries of one results_sharing uplink, for the local API."""
    return SharingQueries(name, config)
