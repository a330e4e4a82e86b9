"""The insurance imaging cloud (seed 004): what it calls on our listener; no messages to it yet."""

from __future__ import annotations

from typing import Any

from agent.dispatch.outcomes import Outcome, Reject
from agent.dispatch.uplink import Uplink
from agent.endpoints import Endpoints, RouteDef
from agent.journal.outbox import OutboxMessage
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.report_service import ReportInfoService
from agent.uplinks.kit.wado import WadoService
from agent.vocabulary.exams import ExamQueries
from agent.vocabulary.images import ImageQueries


class InsuranceImagingUplink(Uplink):
    """Sends nothing yet: the cloud pulls (4.1, 4.2). QR requests and deletion notices (4.3, 4.5)
    will be its messages; until then a message queued for it is a dead letter saying so."""

    async def send(self, message: OutboxMessage) -> Outcome:
        """Refuse: no kind of message is sent to this platform yet."""
        return Reject(f"insurance_imaging sends no {message.kind} messages")


def build(name: str, config: Any) -> InsuranceImagingUplink:
    """The uplink of an [uplinks.<name>] type = "insurance_imaging" table."""
    assert isinstance(config, InsuranceImagingConfig)
    return InsuranceImagingUplink(name)


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
