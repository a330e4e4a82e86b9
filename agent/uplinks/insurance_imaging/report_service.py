"""The report-information service the cloud's front-end polls (seed 004 §4.1.2): a time window of
one of four kinds, or an exam's number, answered with one mapped object per exam."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.endpoints import QUERY_KEY
from agent.uplinks.insurance_imaging.config import REPORT_MAP, ReportService
from agent.uplinks.insurance_imaging.report_view import report_view
from agent.uplinks.kit.fieldfile import load_field_file
from agent.uplinks.kit.fieldmap import RecordMap, apply
from agent.uplinks.kit.wado import WadoLinks
from agent.vocabulary.exams import ExamQueries, ExamRecord, TimeField
from agent.vocabulary.images import ImageQueries, InstanceFile

log = structlog.get_logger(__name__)

DEFAULT_MAP = load_field_file(Path(__file__).with_name("report.toml")).maps[REPORT_MAP]
# The seed's types: the time each compares with the window.
TYPES: dict[str, TimeField] = {
    "1": "exam_at",  # examined
    "2": "refunded_at",  # items refunded
    "3": "audited_at",  # reports audited
    "4": "modified_at",  # reports after their last modification
}
OK, BAD_PARAMETER, INTERNAL = 200, 202, 500  # the seed's 4.3 codes, used alike here (assumed)
MAX_EXAM_NUMBER = 64


class BadParameter(ValueError):
    """A request the seed's code 202 answers: 传参数不规范（少传参数）."""


@dataclass(frozen=True, slots=True)
class Query:
    """What a request asks for: a window of one type, or one exam by its number."""

    field: TimeField | None = None
    start: str = ""
    end: str = ""
    exam_number: str = ""


class ReportInfoService:
    """POST handler of the report-information service (mounted on the uplink's listener)."""

    def __init__(
        self,
        settings: ReportService,
        hospital_id: str,
        exams: ExamQueries,
        images: ImageQueries,
        wado: WadoLinks | None,
    ) -> None:
        self.settings = settings
        self.hospital_id = hospital_id
        self.exams = exams
        self.images = images
        self.wado = wado
        self.record_map: RecordMap = settings.record_map(DEFAULT_MAP)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer `{code, message, data: [...]}`: 200 with the exams, 202 a bad parameter, 500."""
        try:
            query = self.parse(_json(await request.read()))
        except BadParameter as err:
            log.info("insurance.report_query_refused", reason=str(err))
            return _envelope(BAD_PARAMETER, str(err))
        try:
            found = await request.app[QUERY_KEY](partial(self.find, query=query))
        except BadParameter as err:
            return _envelope(BAD_PARAMETER, str(err))
        except (sqlite3.Error, OSError) as err:
            log.error("insurance.report_query_failed", error=type(err).__name__)
            return _envelope(INTERNAL, "内部服务错误")
        # Up to max_records exams to map: not on the event loop, which carries the ingest too.
        data, unmapped = await asyncio.to_thread(self.answer_records, found)
        if unmapped:  # field names only: values are patient data
            log.warning("insurance.report_fields_left_out", fields=sorted(unmapped))
        log.info("insurance.report_query", exams=len(data), by=query.field or "exam_number")
        return _envelope(OK, "成功", data)

    def answer_records(
        self, found: list[tuple[ExamRecord, list[InstanceFile]]]
    ) -> tuple[list[dict[str, object]], set[str]]:
        """The answer's objects, and the fields some value of theirs could not fill."""
        data, unmapped = [], set()
        for record, images in found:
            fields, problems = self.answer_record(record, images)
            data.append(fields)
            unmapped |= {problem.split(":", 1)[0] for problem in problems}
        return data, unmapped

    def answer_record(
        self, record: ExamRecord, images: list[InstanceFile]
    ) -> tuple[dict[str, object], list[str]]:
        """One exam of the answer, mapped (and the fields its values could not fill)."""
        view = report_view(record, self.hospital_id)
        if self.wado is not None:
            view["image_links"] = self.wado.links(images, time.time())
        return apply(self.record_map, view, {"DT": self.settings.time_format})

    def parse(self, body: Any) -> Query:
        """The query a request body asks; BadParameter naming the parameter."""
        settings = self.settings
        if not isinstance(body, Mapping):
            raise BadParameter("body: must be a JSON object")
        exam = body.get(settings.exam_param)
        if exam not in (None, ""):
            if not isinstance(exam, str | int) or not 0 < len(str(exam)) <= MAX_EXAM_NUMBER:
                raise BadParameter(f"{settings.exam_param}: 1-{MAX_EXAM_NUMBER} characters")
            return Query(exam_number=str(exam))
        kind = body.get(settings.type_param)
        field = TYPES.get(str(kind)) if isinstance(kind, str | int) else None
        if field is None:
            wanted = f"one of 1, 2, 3, 4 (or give {settings.exam_param})"
            raise BadParameter(f"{settings.type_param}: {wanted}")
        start = self._moment(body, settings.start_param)
        end = self._moment(body, settings.end_param)
        if "%H" not in settings.time_format:  # dates only: the end day is included whole
            end += timedelta(days=1, seconds=-1)
        if end < start:
            raise BadParameter(f"{settings.end_param}: before {settings.start_param}")
        if end - start > timedelta(days=settings.max_window_days):
            raise BadParameter(f"window: longer than {settings.max_window_days:g} days")
        return Query(field, start.isoformat(), end.isoformat())

    def _moment(self, body: Mapping[str, Any], name: str) -> datetime:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise BadParameter(f"{name}: missing")
        try:
            return datetime.strptime(value, self.settings.time_format)
        except ValueError:
            raise BadParameter(f"{name}: not a time as {self.settings.time_format}") from None

    def find(
        self, conn: sqlite3.Connection, query: Query
    ) -> list[tuple[ExamRecord, list[InstanceFile]]]:
        """The exams the query names, each with its study's images when links are served."""
        if query.field is None:
            one = self.exams.by_number(conn, query.exam_number)
            records = [] if one is None else [one]
        else:
            limit = self.settings.max_records
            records = self.exams.between(conn, query.field, query.start, query.end, limit + 1)
            if len(records) > limit:
                raise BadParameter(f"window: more than {limit} exams, ask for a shorter one")
        return [(record, self._images(conn, record)) for record in records]

    def _images(self, conn: sqlite3.Connection, record: ExamRecord) -> list[InstanceFile]:
        study = record.get("study_uid")
        return self.images.study(conn, study) if self.wado is not None and study else []


def _json(raw: bytes) -> Any:
    """The body's JSON (the getway's content type is not relied on); BadParameter if it is not."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadParameter("body: not UTF-8 JSON") from None


def _envelope(code: int, message: str, data: list[dict[str, Any]] | None = None) -> web.Response:
    body = {"code": code, "message": message, "data": data or []}
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), content_type="application/json", charset="utf-8"
    )
