"""The agent as the hospital being viewed (seed 001 检查8-12): a viewer gate (viewerKey verified
with the platform, then 302 to our viewer), the UID query and WADO-URI (downloadKey verified
first). Fail closed: a key the platform cannot be asked about is refused with 503. Positive
answers are cached for key_cache_seconds, refusals never. No key or patient data is logged."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from aiohttp import web

from agent.dispatch.outcomes import Delivered, Reject
from agent.endpoints import EMIT_KEY, QUERY_KEY, Endpoints, RouteDef
from agent.events import Event
from agent.uplinks.kit.wado import DICOM, PURGED
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.mapping import answer_path
from agent.uplinks.results_sharing.render import NotRenderable, render_jpeg
from agent.uplinks.results_sharing.uplink import ResultsSharingUplink
from agent.vocabulary.images import ImageQueries, InstanceFile

log = structlog.get_logger(__name__)
ACCESS = "results_sharing.image_access"  # journaled for each decision of the gate
JPEG = "image/jpeg"
Verdict = Literal["valid", "invalid", "unverifiable"]
KeyKind = Literal["viewer", "download"]
VALID = (True, 1, "1", "true", "True")


@dataclass(frozen=True, slots=True)
class Check:
    """The platform's verdict on a key, and its words when it refused it."""

    verdict: Verdict
    reason: str = ""
    cached: bool = False  # a positive answer kept from an earlier check with the platform


class KeyVerifier:
    """Asks the platform about keys through the uplink's mapping; caches positive answers."""

    def __init__(
        self, uplink: ResultsSharingUplink, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.uplink = uplink
        self.ttl = ttl
        self.clock = clock
        self._valid: dict[tuple[str, str, str], float] = {}
        self._opened = False
        self._lock = asyncio.Lock()

    async def check(self, kind: KeyKind, key: str, study_uid: str) -> Check:
        """The platform's verdict on `key` for `study_uid` (cached while positive)."""
        cached = self._valid.get((kind, key, study_uid))
        if cached is not None and cached > self.clock():
            return Check("valid", cached=True)
        keys = self.uplink.mapping.platform.keys
        if keys is None:
            return Check("unverifiable", "the mapping has no [keys]: keys cannot be verified")
        async with self._lock:
            if not self._opened:
                await self.uplink.open()
                self._opened = True
        name = keys.viewer_map if kind == "viewer" else keys.download_map
        outcome, answer = await self.uplink.ask(name, {"key": key, "study_uid": study_uid})
        if isinstance(outcome, Delivered):
            if answer_path(answer, keys.valid) in VALID:
                if self.ttl > 0:
                    self._valid[(kind, key, study_uid)] = self.clock() + self.ttl
                    if len(self._valid) > 10_000:  # bounded: the oldest entries go first
                        self._valid.pop(next(iter(self._valid)))
                return Check("valid")
            return Check("invalid", "平台答复该key无效")
        if isinstance(outcome, Reject) and " not sent: " not in outcome.reason:
            return Check("invalid", outcome.reason)
        return Check("unverifiable", outcome.reason)

    async def close(self) -> None:
        """Close the uplink's session, if it was opened."""
        if self._opened:
            await self.uplink.close()


class ImageGate:
    """The three routes and their checks."""

    def __init__(
        self, name: str, config: ResultsSharingConfig, images: ImageQueries, verifier: KeyVerifier
    ) -> None:
        self.name = name
        self.settings = config.gate
        self.images = images
        self.verifier = verifier
        self.ttl = config.gate.key_cache_seconds
        # A study's instances, read once per key_cache_seconds: a viewer fetches them one by
        # one right after the UID query (an image PACS deletes meanwhile is served until then).
        self._studies: dict[str, tuple[float, dict[str, InstanceFile]]] = {}

    async def _instances(self, request: web.Request, study: str) -> dict[str, InstanceFile]:
        cached = self._studies.get(study)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await request.app[QUERY_KEY](lambda conn: self.images.study(conn, study))
        instances = {image.sop_uid: image for image in found}
        if self.ttl > 0 and instances:
            self._studies[study] = (now + self.ttl, instances)
            if len(self._studies) > 1000:  # bounded: the oldest go first
                self._studies.pop(next(iter(self._studies)))
        return instances

    def routes(self) -> list[RouteDef]:
        """GET viewer, UID query and WADO-URI."""
        s = self.settings
        return [
            RouteDef("GET", s.viewer_path, self.viewer),
            RouteDef("GET", s.uid_path, self.uids),
            RouteDef("GET", s.wado_path, self.wado_uri),
        ]

    async def viewer(self, request: web.Request) -> web.StreamResponse:
        """302 to our viewer for a valid viewerKey; 403 with a Chinese reason; 503 unverifiable."""
        study = request.query.get("studyUID", "")
        key = request.query.get(self.settings.viewer_key_param, "")
        if not _is_uid(study):
            return _text(400, "studyUID: 须为DICOM UID")
        if not key:
            await self._journal(request, "viewer", study, "refused")
            return _text(403, f"拒绝调阅：未携带{self.settings.viewer_key_param}")
        if not await self._instances(request, study):
            await self._journal(request, "viewer", study, "not_found")
            return _text(404, "本院无此检查")
        check = await self.verifier.check("viewer", key, study)
        await self._journal(request, "viewer", study, _result(check))
        refusal = _refusal(check, self.settings.viewer_key_param)
        if refusal is not None:
            return refusal
        assert self.settings.viewer_redirect is not None
        target = self.settings.viewer_redirect.replace("{study_uid}", study)
        raise web.HTTPFound(target.replace("{accession}", ""))

    async def uids(self, request: web.Request) -> web.StreamResponse:
        """The study's series and instance UIDs, after the downloadKey check."""
        study = request.query.get("studyUID", "")
        if not _is_uid(study):
            return _json(400, {"error": "studyUID: a DICOM UID required"})
        refusal = await self._download_allowed(request, "uids", study)
        if refusal is not None:
            return refusal
        images = await self._instances(request, study)
        if not images:
            return _json(404, {"error": "no such study"})
        series: dict[str, list[dict[str, str]]] = {}
        for image in images.values():
            if image.purged:  # its file is gone: not offered
                continue
            series.setdefault(image.series_uid, []).append(
                {"objectUID": image.sop_uid, "transferSyntax": image.transfer_syntax}
            )
        body = {
            "studyUID": study,
            "series": [{"seriesUID": uid, "instances": found} for uid, found in series.items()],
        }
        return _json(200, body)

    async def wado_uri(self, request: web.Request) -> web.StreamResponse:
        """PS3.18 WADO-URI: application/dicom as stored, or image/jpeg for single-frame images."""
        query = request.query
        if query.get("requestType") != "WADO":
            return _json(400, {"error": "requestType: must be WADO"})
        uids = (query.get("studyUID", ""), query.get("seriesUID", ""), query.get("objectUID", ""))
        if not all(_is_uid(uid) for uid in uids):
            return _json(400, {"error": "studyUID, seriesUID and objectUID: DICOM UIDs required"})
        refusal = await self._download_allowed(request, "wado", uids[0])
        if refusal is not None:
            return refusal
        wanted = [c.strip().split(";")[0] for c in query.get("contentType", JPEG).split(",")]
        dicom = DICOM in wanted and (JPEG not in wanted or wanted.index(DICOM) < wanted.index(JPEG))
        if not dicom and JPEG not in wanted:
            return _json(406, {"error": f"contentType: {DICOM} or {JPEG}"})
        image = (await self._instances(request, uids[0])).get(uids[2])
        if image is None or image.series_uid != uids[1]:
            return _json(404, {"error": "no such instance"})
        if image.purged:
            return _json(410, {"error": PURGED})
        if dicom:  # as received (a file gone from the spool: 404)
            return await _send_file(request, image.path, image.sop_uid)
        try:
            data = await asyncio.to_thread(render_jpeg, Path(image.path))
        except FileNotFoundError:
            return _json(404, {"error": "no such instance"})
        except NotRenderable as err:
            return _json(406, {"error": str(err)})
        return web.Response(body=data, content_type=JPEG)

    async def _download_allowed(
        self, request: web.Request, what: str, study: str
    ) -> web.StreamResponse | None:
        key = request.query.get(self.settings.download_key_param, "")
        if not key:
            await self._journal(request, what, study, "refused")
            return _text(403, f"拒绝下载：未携带{self.settings.download_key_param}")
        check = await self.verifier.check("download", key, study)
        # Journaled: each refusal, each UID query, each download the platform was asked about;
        # not each image served while its key's answer is cached (a study's images come one by
        # one: a journal commit each would be on every image's path).
        if check.verdict != "valid" or what == "uids" or not check.cached:
            await self._journal(request, what, study, _result(check))
        return _refusal(check, self.settings.download_key_param)

    async def _journal(self, request: web.Request, what: str, study: str, result: str) -> None:
        payload = {"what": what, "study_uid": study, "result": result, "remote": request.remote}
        await request.app[EMIT_KEY](Event(ACCESS, f"listener:{self.name}", payload))
        log.info("results_sharing.image_access", what=what, result=result)


async def _send_file(request: web.Request, path: str, sop_uid: str) -> web.StreamResponse:
    """The file as received, by sendfile (zero copy) right after its headers."""
    try:
        # On the loop, as nginx does: opening a spool file is microseconds, less than the thread
        # hop it would cost; sendfile reads the page cache from the loop anyway (as FileResponse).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # Windows: no CRLF games
    except FileNotFoundError:
        return _json(404, {"error": "no such instance"})
    try:
        size = os.fstat(fd).st_size
        headers = {"Content-Type": DICOM,
                   "Content-Disposition": f'attachment; filename="{sop_uid}.dcm"'}  # fmt: skip
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        # Not corked: TCP_CORK around headers and file cost the agent 0.38 ms of CPU per 0.5 MB
        # image read by aiohttp against 0.24 without (docs/platforms/results_sharing.md).
        await response.prepare(request)
        sock = transport.get_extra_info("socket")
        sent = 0
        plain = sock is not None and not transport.get_extra_info("sslcontext")
        if plain and transport.get_write_buffer_size() == 0:  # the headers are in the socket
            sent = _send_now(sock.fileno(), fd, size)
        if sent < size:  # the socket is full: asyncio waits for room, the rest follows
            with open(fd, "rb", closefd=False) as file:  # noqa: ASYNC230 (no I/O: a wrapper)
                await asyncio.get_running_loop().sendfile(transport, file, sent, size - sent)
        await response.write_eof()
    finally:
        os.close(fd)
    return response


def _send_now(out: int, fd: int, size: int) -> int:
    """Bytes of the file that sendfile puts in the socket before it would block. What fits
    leaves in this call: loop.sendfile would pause the transport and wait a turn of the loop for
    each call, ~0.1 ms per 0.5 MB image (docs/platforms/results_sharing.md, benchmark)."""
    if sys.platform == "win32":  # no os.sendfile: loop.sendfile (TransmitFile) sends it all
        return 0
    sent = 0
    while sent < size:
        try:
            count = os.sendfile(out, fd, sent, size - sent)
        except (BlockingIOError, InterruptedError):
            break
        if count == 0:  # the file shrank under us: loop.sendfile ends the same way
            break
        sent += count
    return sent


def _result(check: Check) -> str:
    return {"valid": "allowed", "invalid": "refused", "unverifiable": "unverifiable"}[check.verdict]


def _refusal(check: Check, param: str) -> web.Response | None:
    if check.verdict == "valid":
        return None
    if check.verdict == "invalid":
        return _text(403, f"拒绝：{param}无效、已过期或不属于本检查（{check.reason}）")
    return _text(503, f"暂时无法向平台校验{param}，拒绝访问，请稍后再试")


def _is_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and all(part.isdigit() for part in value.split("."))


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def endpoints(name: str, config: Any, *, images: ImageQueries) -> Endpoints:
    """What other hospitals call on this uplink's gate listener (the study index's read side
    handed over by the wiring)."""
    assert isinstance(config, ResultsSharingConfig)
    verifier = KeyVerifier(ResultsSharingUplink(name, config), config.gate.key_cache_seconds)
    gate = ImageGate(name, config, images, verifier)
    return Endpoints(config.gate.listener, gate.routes(), close=verifier.close)
