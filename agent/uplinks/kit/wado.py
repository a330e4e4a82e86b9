"""WADO-URI (DICOM PS3.18) over the spool for platforms that fetch images by link:
`GET <path>?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…&contentType=application/dicom`
answers the file as it was received, streamed; links may carry an expiring HMAC token."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

import structlog
from aiohttp import web
from pydantic import Field, HttpUrl, model_validator

from agent.config import MIN_TOKEN_LENGTH, Seconds, Secret, Section, too_short
from agent.endpoints import QUERY_KEY, RouteDef
from agent.uplinks.kit.zipstream import send_zip
from agent.vocabulary.images import ImageQueries, InstanceFile

log = structlog.get_logger(__name__)
DICOM = "application/dicom"
ZIP = "application/zip"
Uids = tuple[str, str, str]  # study, series, object ("" for a study's ZIP)


class WadoLinks(Section):
    """[uplinks.<name>.wado]: image links the platform fetches from this uplink's listener."""

    enabled: bool = False
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")] = "/wado"
    # How the platform reaches the listener (scheme, address, port), for the links we hand out.
    base_url: HttpUrl | None = None
    link_key: Secret | None = None  # when set, a link carries `expires` and an HMAC `token`
    link_lifetime: Seconds = 7 * 86400.0  # how long a tokened link stays valid
    per: Literal["instance", "study"] = "instance"  # one link an image, or a study's ZIP

    @model_validator(mode="after")
    def _usable(self) -> WadoLinks:
        if self.enabled and self.base_url is None:
            raise ValueError("base_url is required when enabled: how the platform reaches us")
        if too_short(self.link_key):
            raise ValueError(f"link_key is too short: at least {MIN_TOKEN_LENGTH} characters")
        return self

    def links(self, images: list[InstanceFile], now: float) -> list[str]:
        """The links of a study's images: one an image, or one ZIP of them all (`per`). An
        image whose file the spool retention deleted has none (its link would only say 410),
        nor a study missing one (its ZIP would be incomplete)."""
        kept = [i for i in images if not i.purged]
        if self.per == "study":
            whole = kept and len(kept) == len(images)
            return [self.link((images[0].study_uid, "", ""), ZIP, now)] if whole else []
        return [self.link((i.study_uid, i.series_uid, i.sop_uid), DICOM, now) for i in kept]

    def link(self, uids: Uids, content: str, now: float) -> str:
        """The URL of an instance (or, without series and object, a study), signed if set."""
        params = {"requestType": "WADO", "studyUID": uids[0]}
        if uids[2]:
            params |= {"seriesUID": uids[1], "objectUID": uids[2]}
        params["contentType"] = content
        if self.link_key is not None:
            expires = str(int(now + self.link_lifetime))
            params |= {"expires": expires, "token": self._token(uids, expires)}
        return f"{str(self.base_url).rstrip('/')}{self.path}?{urlencode(params)}"

    def _token(self, uids: Uids, expires: str) -> str:
        assert self.link_key is not None
        message = "/".join([*uids, expires]).encode()
        key = self.link_key.get_secret_value().encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def signed_right(self, uids: Uids, expires: str, token: str, now: float) -> bool:
        """Whether a request's token is this link's and has not expired."""
        if self.link_key is None:
            return True
        if not expires.isdigit() or int(expires) < now:
            return False
        return hmac.compare_digest(token.encode(), self._token(uids, expires).encode())


class WadoService:
    """The WADO-URI route: one instance by its UIDs, the spool file as received."""

    def __init__(self, settings: WadoLinks, images: ImageQueries) -> None:
        self.settings = settings
        self.images = images

    def route(self) -> RouteDef:
        """The route to mount on the platform's listener."""
        return RouteDef("GET", self.settings.path, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """400 a malformed request, 406 another content type, 403 a bad or expired token, 404
        an instance not indexed (or under other study/series UIDs) or gone from the spool, 410
        one whose file the spool retention policy deleted."""
        query = request.query
        if query.get("requestType") != "WADO":
            return _refuse(400, "requestType: must be WADO")
        uids = (query.get("studyUID", ""), query.get("seriesUID", ""), query.get("objectUID", ""))
        content = query.get("contentType", DICOM)
        if content == ZIP and self.settings.per == "study":
            return await self._study(request, uids)
        if not all(_is_uid(uid) for uid in uids):
            return _refuse(400, "studyUID, seriesUID and objectUID: DICOM UIDs required")
        if content != DICOM:
            served = f"{DICOM} (and {ZIP} for a study)" if self.settings.per == "study" else DICOM
            return _refuse(406, f"contentType: only {served} is served")
        image = await request.app[QUERY_KEY](lambda conn: self.images.instance(conn, uids[2]))
        if image is None or (image.study_uid, image.series_uid) != uids[:2]:
            return _refuse(404, "no such instance")
        expires, token = query.get("expires", ""), query.get("token", "")
        if not self.settings.signed_right(uids, expires, token, time.time()):
            return _refuse(403, "token: missing, wrong or expired")
        if image.purged:
            return _refuse(410, PURGED)
        path = Path(image.path)
        if not await asyncio.to_thread(path.is_file):
            log.warning("wado.file_missing", path=str(path))
            return _refuse(404, "no such instance")
        log.info("wado.served", size=image.size)
        return web.FileResponse(
            path,
            headers={
                "Content-Type": DICOM,
                "Content-Disposition": f'attachment; filename="{image.sop_uid}.dcm"',
            },
        )

    async def _study(self, request: web.Request, uids: Uids) -> web.StreamResponse:
        """A study's images as one ZIP (`<series>/<object>.dcm`), streamed."""
        study = uids[0]
        if not _is_uid(study) or uids[1] or uids[2]:
            return _refuse(400, "studyUID alone: a DICOM UID required")
        expires, token = request.query.get("expires", ""), request.query.get("token", "")
        if not self.settings.signed_right((study, "", ""), expires, token, time.time()):
            return _refuse(403, "token: missing, wrong or expired")
        images = await request.app[QUERY_KEY](lambda conn: self.images.study(conn, study))
        if any(i.purged for i in images):
            return _refuse(410, PURGED)
        paths = [Path(i.path) for i in images]
        if not images or not all(await asyncio.to_thread(lambda: [p.is_file() for p in paths])):
            log.warning("wado.study_incomplete", images=len(images))
            return _refuse(404, "no such study, or an image of it is gone from the spool")
        files = [(f"{i.series_uid}/{i.sop_uid}.dcm", p) for i, p in zip(images, paths, strict=True)]
        log.info("wado.study_served", images=len(files))
        return await send_zip(request, files, f"{study}.zip")


PURGED = "purged: the spool retention policy deleted this image's file after its delivery"


def _is_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and all(part.isdigit() for part in value.split("."))


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)
