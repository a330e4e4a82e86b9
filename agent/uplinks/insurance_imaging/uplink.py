"""The insurance imaging cloud (seed 004): the QR link of each audited report (4.3), deletion
notices (4.5), and what its front-end calls on our listener (4.1 report service, 4.2 links)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.endpoints import Endpoints, RouteDef
from agent.journal.outbox import OutboxMessage
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.launch import launch_forms
from agent.uplinks.insurance_imaging.report_service import ReportInfoService
from agent.uplinks.kit.answers import BUSY, AnswerRules, CodeRule, judge
from agent.uplinks.kit.request import Request
from agent.uplinks.kit.uplink import HttpPlatformUplink
from agent.uplinks.kit.wado import WadoService
from agent.vocabulary.doctors import DoctorLogin
from agent.vocabulary.exams import ExamQueries
from agent.vocabulary.images import ImageQueries

AUDITED = "report.audited"
DELETED = "study.deleted"
# 4.3's answers: {code, message, data}; 200 the link, 500 内部服务错误 (retried), 202 传参数不规范
# (a dead letter naming what was missing); the code may come as "200" or 200.
QR_ANSWERS = AnswerRules(
    message_key="message",
    rules=(CodeRule(BUSY, codes=frozenset({500}), reason="front-end error: "),),
)
# 4.5 gives no answer: any 2xx is taken; 5xx and 408/425/429 retried, other statuses refused.
NOTICE_ANSWERS = AnswerRules(body="none")


class InsuranceImagingUplink(HttpPlatformUplink):
    """Asks the front-end for an audited report's QR link; the answer is kept with the message."""

    def __init__(self, name: str, config: InsuranceImagingConfig) -> None:
        super().__init__(name, config)
        self.config = config

    async def healthcheck(self) -> bool:
        """No token to fetch: the front-end is asked only when a report is audited."""
        return True

    async def send(self, message: OutboxMessage) -> Outcome:
        """A QR request for a `report.audited` record, a notice for `study.deleted`."""
        if message.kind == DELETED:
            return await self._notice(message.payload)
        if message.kind != AUDITED:
            return Reject(f"insurance_imaging sends no {message.kind} messages")
        qr = self.config.qr
        if not qr.enabled:  # configured off: kept as delivered, saying so
            return Delivered("not asked: [qr] is not enabled for this uplink")
        record = message.payload.get("record") or {}
        params = {
            "accessNumber": str(record.get("accession") or record.get("exam_no") or ""),
            "modality": str((record.get("order") or {}).get("exam_class") or ""),
            "hospitalId": self.config.hospital_id,
        }
        missing = [name for name, value in params.items() if not value]
        if missing:
            return Reject(f"{', '.join(missing)}: the exam has none; 4.3 requires it")
        url = self.config.frontend(f"{qr.path}/{qr.kind}")

        async def request() -> Request:
            return Request("GET", url, params=params)

        answer = await self._exchange(request)
        if isinstance(answer, Retry):
            return answer
        return judge(QR_ANSWERS, answer.status, answer.text, answer.retry_after)

    async def _notice(self, payload: Mapping[str, Any]) -> Outcome:
        """4.5: patientName, accessionNo, hospitalId, operateDoctorName, operateDateTime."""
        deletion = self.config.deletion
        if not deletion.enabled or deletion.url is None:
            return Delivered("not sent: [deletion] is not enabled for this uplink")
        try:
            at = datetime.fromisoformat(str(payload["at"])).strftime(deletion.time_format)
        except (KeyError, ValueError):
            return Reject("at: not a date-time; the notice cannot say when")
        fields = {
            "patientName": str(payload.get("patient_name") or ""),
            "accessionNo": str(payload.get("accession") or ""),
            "hospitalId": self.config.hospital_id,
            "operateDoctorName": str(payload.get("by") or ""),
            "operateDateTime": at,
        }
        missing = [name for name, value in fields.items() if not value]
        if missing:
            return Reject(f"{', '.join(missing)}: missing; 4.5 requires it")
        url = str(deletion.url)

        async def request() -> Request:
            if deletion.method == "get":
                return Request("GET", url, params=fields)
            if deletion.method == "post_form":
                return Request("POST", url, data=fields)
            body = json.dumps(fields, ensure_ascii=False).encode()
            return Request("POST", url, {"Content-Type": "application/json"}, body)

        answer = await self._exchange(request)
        if isinstance(answer, Retry):
            return answer
        return judge(NOTICE_ANSWERS, answer.status, answer.text, answer.retry_after)


def build(name: str, config: Any) -> InsuranceImagingUplink:
    """The uplink of an [uplinks.<name>] type = "insurance_imaging" table."""
    assert isinstance(config, InsuranceImagingConfig)
    return InsuranceImagingUplink(name, config)


def endpoints(name: str, config: Any, *, exams: ExamQueries, images: ImageQueries) -> Endpoints:
    """What the cloud's front-end calls on this uplink's listener: the report service and, when
    enabled, the image links (the domain's read sides, handed over by the wiring)."""
    assert isinstance(config, InsuranceImagingConfig)
    wado = config.wado if config.wado.enabled else None
    service = ReportInfoService(config.report_service, config.hospital_id, exams, images, wado)
    routes = [RouteDef("POST", config.report_service.path, service.handle)]
    if wado is not None:
        routes.append(WadoService(wado, images).route())
    return Endpoints(config.listener, routes)


def launcher(config: InsuranceImagingConfig) -> Callable[[Mapping[str, Any]], dict[str, str]]:
    """Builds the viewer plugin's launch forms from a doctor's data (pydantic ValidationError
    naming what is wrong); for the local API and the CLI."""

    def launch(body: Mapping[str, Any]) -> dict[str, str]:
        doctor = DoctorLogin.model_validate(body)
        return launch_forms(config.viewer, config.hospital_id, doctor)

    return launch
