"""The results-sharing uplink (seed 001): each message mapped by the mapping set, checked
against its table, sent with a token to the sub-platform or, when it fails, its fallbacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.kit.answers import (
    BUSY,
    DELIVERED,
    AnswerRules,
    CodeRule,
    classify,
    outcome,
    token_envelope,
)
from agent.uplinks.kit.fieldmap import apply
from agent.uplinks.kit.fields import validate
from agent.uplinks.kit.request import TRANSPORT_ERRORS, Answer, Request, fetch
from agent.uplinks.kit.tokens import Token, TokenCache, TokenError
from agent.uplinks.kit.uplink import HttpPlatformUplink
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.mapping import MappingSet, answer_path
from agent.uplinks.results_sharing.multipart import encode_multipart
from agent.uplinks.results_sharing.view import exam_view

log = structlog.get_logger(__name__)

# The imaging domain's messages -> the map that sends them; any other kind is sent by the map
# of its own name, when the mapping set has one (its payload's `record` is the record).
MAPS = {"report.audited": "exam.index", "report.file": "exam.pdf"}
FILE_KINDS = frozenset({"report.file", "lab.pdf"})  # messages whose `file` is sent with them
_JSON = {"Content-Type": "application/json; charset=utf-8"}


class DownloadError(Exception):
    """A file the platform named could not be fetched (the reason, without the address)."""


def answer_rules(mapping: MappingSet) -> AnswerRules:
    """The mapping set's [answer] as the kit's answer rules."""
    shape = mapping.platform.answer
    return AnswerRules(
        code_key=shape.code,
        message_key=shape.message,
        data_key=shape.data,
        delivered_codes=frozenset(shape.success),
        token_codes=frozenset(shape.token_expired),
        rules=(
            CodeRule(BUSY, codes=frozenset(shape.busy), reason="platform busy: "),
            CodeRule(DELIVERED, codes=frozenset(shape.already)),
        ),
    )


class ResultsSharingUplink(HttpPlatformUplink):
    """Sends the exam index, its report PDF and whatever else the mapping set maps."""

    def __init__(
        self,
        name: str,
        config: ResultsSharingConfig,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        secret = config.app_secret.get_secret_value()
        super().__init__(name, config, monotonic=monotonic, hide=(secret,))
        self.config = config
        self.mapping = config.mapping
        self.rules = answer_rules(self.mapping)
        self._secret = secret
        self._monotonic = monotonic
        self._urls = config.base_urls()
        lifetime, margin = config.token_timing()
        self._caches = [
            TokenCache(
                partial(self._token_at, url), lifetime=lifetime, margin=margin, clock=monotonic
            )
            for url in self._urls
        ]
        self.tokens = self._caches[0]
        self._preferred = 0
        self._preferred_since = monotonic()

    async def authenticate(self) -> None:
        """A new token from the platform in use."""
        await self._caches[self._preferred].renew()

    async def healthcheck(self) -> bool:
        """Whether the platform in use gives a token."""
        try:
            await self._caches[self._preferred].get()
        except TRANSPORT_ERRORS:
            return False
        return True

    async def send(self, message: OutboxMessage) -> Outcome:
        """Map, check, then send one message; a mapping problem is a dead letter naming fields."""
        prepared = await self._prepare(message.kind, message.payload)
        if not isinstance(prepared, tuple):
            return prepared
        kind, path, headers, body = prepared
        answer = await self._reach(path, headers, body)
        return answer if isinstance(answer, Retry) else self._judge(kind, answer)

    async def ask(self, kind: str, record: dict[str, Any]) -> tuple[Outcome, Any]:
        """A query made by map `kind` from `record`: its outcome and, if delivered, the answer's
        JSON (for the completeness check, which is asked, not queued)."""
        prepared = await self._prepare(kind, {"record": record})
        if not isinstance(prepared, tuple):
            return prepared, None
        kind, path, headers, body = prepared
        answer = await self._reach(path, headers, body)
        if isinstance(answer, Retry):
            return answer, None
        outcome = self._judge(kind, answer)
        if not isinstance(outcome, Delivered):
            return outcome, None
        try:
            return outcome, json.loads(answer.text)
        except ValueError:
            return Retry(f"{kind}: the answer is not JSON"), None

    async def _prepare(
        self, message_kind: str, payload: dict[str, Any]
    ) -> tuple[str, str, dict[str, str], bytes] | Outcome:
        """(map, path, headers, body) of a message, or why it cannot be sent."""
        kind = MAPS.get(message_kind, message_kind)
        if kind not in self.mapping.maps or not self.mapping.maps[kind].endpoint:
            return Reject(f"results_sharing has no map for {message_kind} messages")
        view = exam_view(payload, self._org(), self.config.links())
        file: tuple[str, bytes] | None = None
        if message_kind in FILE_KINDS:
            read = await self._read_file(payload.get("file") or {}, kind)
            if not isinstance(read, tuple):
                return read
            file, view["file"] = read[0], read[1]
        fields, problems = apply(self.mapping.maps[kind], view, self.mapping.platform.formats)
        table_name, endpoint = self.mapping.endpoint_of(kind)
        problems += validate(self.mapping.tables[table_name], fields, self.mapping.checks)
        if problems:
            return Reject(f"{kind} not sent: {'; '.join(problems)}")
        if endpoint.body == "multipart":
            name, data = file if file is not None else ("", b"")
            body, content_type = encode_multipart(fields, endpoint.file_part, name, data)
            headers = {"Content-Type": content_type}
        else:
            body, headers = json.dumps(fields, ensure_ascii=False).encode("utf-8"), dict(_JSON)
        return kind, endpoint.path, headers, body

    async def _read_file(
        self, file: dict[str, Any], kind: str
    ) -> tuple[tuple[str, bytes], dict[str, Any]] | Outcome:
        name = str(file.get("name") or "")
        path = self.config.files_dir / name
        if not name or Path(name).name != name:
            return Reject(f"{kind}: no file name")
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return Reject(f"{kind}: {name} is missing from {self.config.files_dir}")
        except OSError as err:
            return Retry(f"{kind}: cannot read {name} ({err.strerror or err})")
        digest = hashlib.sha256(data).hexdigest()
        described = {"name": name, "size": len(data), "sha256": digest}
        if any(r.source == "file.base64" for r in self.mapping.maps[kind].fields):
            described["base64"] = base64.b64encode(data).decode("ascii")
        return (name, data), described

    async def _reach(self, path: str, headers: dict[str, str], body: bytes) -> Answer | Retry:
        """POST to the platform in use; on no answer or 5xx, to the next in turn."""
        now = self._monotonic()
        if self._preferred and now - self._preferred_since > self.config.fallback_hold:
            self._use(0, now)  # time to try the sub-platform again
        order = [self._preferred] + [i for i in range(len(self._urls)) if i != self._preferred]
        last: Answer | Retry | None = None
        for index in order:
            last = await self._exchange(partial(self._request, index, path, headers, body))
            if isinstance(last, Retry) or last.status >= 500:
                continue
            if index != self._preferred:
                self._use(index, now)
            return last
        assert last is not None
        return last

    async def download(self, url: str, limit: int) -> bytes:
        """GET a file the platform named (a report PDF), with the token: only under one of its
        base URLs (the token must not go elsewhere); DownloadError says why not."""
        index = next((i for i, base in enumerate(self._urls) if url.startswith(f"{base}/")), None)
        if index is None:
            raise DownloadError("its address is not under the platform's base URLs")
        assert self._session is not None, "open() first"
        auth = self.mapping.platform.auth
        try:
            token = await self._caches[index].get()
            headers = {auth.header: f"{auth.prefix}{token}"}
            async with self._session.get(url, headers=headers) as answer:
                if answer.status != 200:
                    raise DownloadError(f"HTTP {answer.status}")
                data = await answer.content.read(limit + 1)
        except TRANSPORT_ERRORS as err:
            raise DownloadError(f"not reachable ({type(err).__name__})") from None
        if len(data) > limit:
            raise DownloadError(f"larger than {limit} bytes")
        return data

    def _use(self, index: int, now: float) -> None:
        log.warning("results_sharing.platform_switched", uplink=self.name, to=self._urls[index])
        self._preferred, self._preferred_since = index, now

    async def _request(
        self, index: int, path: str, headers: dict[str, str], body: bytes
    ) -> Request:
        auth = self.mapping.platform.auth
        token = await self._caches[index].get()
        sent = {**headers, auth.header: f"{auth.prefix}{token}"}
        return Request("POST", f"{self._urls[index]}/{path.lstrip('/')}", sent, body)

    def _judge(self, kind: str, answer: Answer) -> Outcome:
        if answer.status != 200 and 200 <= answer.status < 300:
            reason = f"HTTP {answer.status}: anything but 200 is a failure (seed 001)"
            return Reject(reason, response=answer.text)
        verdict = classify(self.rules, answer.status, answer.text, kind)
        if verdict.verdict == "token":
            for cache in self._caches:
                cache.invalidate()
        return outcome(verdict, answer.text, answer.retry_after)

    async def _token_at(self, url: str) -> Token:
        assert self._session is not None, "open() first"
        return await self._fetch_token_from(self._session, url)

    async def _fetch_token_from(self, session: aiohttp.ClientSession, url: str) -> Token:
        spec = self.mapping.platform.token
        values = {"{app_id}": self.config.app_id, "{app_secret}": self._secret}
        body = {k: values.get(v, v) for k, v in spec.body.items()}
        request = Request(
            "POST", f"{url}/{spec.path.lstrip('/')}", _JSON, json.dumps(body).encode("utf-8")
        )
        answer = await fetch(session, request)
        token_envelope(self.rules, answer.status, answer.text, "getToken")
        try:
            document = json.loads(answer.text)
        except ValueError:
            raise TokenError("getToken answered no JSON", unreadable=True) from None
        value = answer_path(document, spec.token)
        if not isinstance(value, str) or not value:
            raise TokenError(f"getToken answered no token at {spec.token}", unreadable=True)
        lifetime = answer_path(document, spec.expires_in)
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else None
        return Token(value, seconds)

    def _org(self) -> dict[str, str]:
        return {"code": self.config.org_code, "name": self.config.org_name}


def build(name: str, config: Any) -> ResultsSharingUplink:
    """The uplink of an [uplinks.<name>] type = "results_sharing" table."""
    assert isinstance(config, ResultsSharingConfig)
    return ResultsSharingUplink(name, config)
