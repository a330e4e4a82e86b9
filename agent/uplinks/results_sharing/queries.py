"""Queries for doctors' stations (seed 001 公共6-7, 检查4-7, 检验7-9), asked synchronously through
the local API: the parameters mapped by the query's map, the platform's `data` answered; answers
of a query with cache_seconds (lab data, L223) are kept in the journal (rs_query_cache) and
answered from there until they expire, also after a restart."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import structlog

from agent.dispatch.outcomes import Delivered, Reject
from agent.endpoints import Query
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.mapping import answer_path
from agent.uplinks.results_sharing.uplink import DownloadError, ResultsSharingUplink

log = structlog.get_logger(__name__)
PARAMS = frozenset(
    {"id_card_no", "patient_name", "start_date", "end_date", "other_org_code", "exam_no",
     "report_no", "study_uid", "domain", "region_code"}
)  # fmt: skip
MISSING = object()
MAX_PDF = 64 * 1024 * 1024  # bytes: a report PDF larger than this is refused (502)


def cached_answer(
    conn: sqlite3.Connection, *, uplink: str, query: str, params_hash: str, now: float
) -> Any:
    """The kept data of a query (MISSING when none or expired); expired rows are deleted."""
    conn.execute("DELETE FROM rs_query_cache WHERE expires_at <= ?", (now,))
    row = conn.execute(
        "SELECT data FROM rs_query_cache WHERE uplink = ? AND query = ? AND params_hash = ?",
        (uplink, query, params_hash),
    ).fetchone()
    return MISSING if row is None else json.loads(row[0])


def keep_answer(
    conn: sqlite3.Connection,
    *,
    uplink: str,
    query: str,
    params_hash: str,
    data: Any,
    now: float,
    seconds: float,
) -> None:
    """Keep (or replace) a query's data until now + seconds."""
    conn.execute(
        "INSERT OR REPLACE INTO rs_query_cache"
        " (uplink, query, params_hash, data, fetched_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (uplink, query, params_hash, json.dumps(data, ensure_ascii=False), now, now + seconds),
    )


class SharingQueries:
    """`ask(name, params, run) -> (HTTP status, answer)` for the local API."""

    def __init__(
        self, name: str, config: ResultsSharingConfig, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = name
        self.uplink = ResultsSharingUplink(name, config)
        self.queries = config.mapping.platform.queries
        self.data_key = config.mapping.platform.answer.data
        self.clock = clock  # wall time: kept answers outlive the process
        self._opened = False
        self._lock = asyncio.Lock()

    async def ask(
        self, name: str, params: Mapping[str, Any], run: Query
    ) -> tuple[int, dict[str, Any]]:
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
        text = json.dumps(dict(params), sort_keys=True, ensure_ascii=False)
        key = hashlib.sha256(text.encode()).hexdigest()
        if query.cache_seconds:
            kept = await run(partial(cached_answer, uplink=self.name, query=name,
                                     params_hash=key, now=self.clock()))  # fmt: skip
            if kept is not MISSING:
                log.info("results_sharing.query", query=name, source="local")
                return 200, {"source": "local", "data": kept}
        await self._open()
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
            keep = partial(keep_answer, uplink=self.name, query=name, params_hash=key, data=data,
                           now=self.clock(), seconds=query.cache_seconds)  # fmt: skip
            await run(keep)
        return 200, {"source": "platform", "data": data}

    async def pdf(
        self, name: str, params: Mapping[str, Any], run: Query
    ) -> tuple[int, bytes | dict[str, Any]]:
        """The PDF of the first record the query answers: 200 and its bytes; 404 no such PDF
        query or no PDF; 502 what the platform gave is not a reachable PDF; else as `ask`."""
        query = self.queries.get(name)
        if query is None or not query.pdf:
            named = sorted(n for n, q in self.queries.items() if q.pdf)
            return 404, {"error": f"no PDF query {name!r}", "queries": named}
        status, body = await self.ask(name, params, run)
        if status != 200:
            return status, body
        data = body["data"]
        records = data if isinstance(data, list) else [data]
        found = [r[query.pdf] for r in records if isinstance(r, dict) and r.get(query.pdf)]
        if not found or not isinstance(found[0], str):
            return 404, {"error": "the platform holds no PDF for these parameters"}
        try:
            if found[0].startswith(("http://", "https://")):
                await self._open()
                pdf = await self.uplink.download(found[0], MAX_PDF)
            else:
                pdf = base64.b64decode(found[0], validate=True)
        except DownloadError as err:
            return 502, {"error": "the platform's PDF could not be fetched", "reason": str(err)}
        except binascii.Error:
            return 502, {"error": f"{query.pdf}: neither an address nor Base64"}
        if not pdf.startswith(b"%PDF-"):
            return 502, {"error": "the platform's file is not a PDF"}
        log.info("results_sharing.pdf_fetched", query=name, size=len(pdf))
        return 200, pdf

    async def _open(self) -> None:
        async with self._lock:
            if not self._opened:
                await self.uplink.open()
                self._opened = True

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._opened:
            await self.uplink.close()


def queries(name: str, config: ResultsSharingConfig) -> SharingQueries:
    """The queries of one results_sharing uplink, for the local API."""
    return SharingQueries(name, config)
