"""The provincial imaging platform of seed 003 §3.4 (scenario 3): serves SynApplyInfo (SOAP),
checks each request against the element table (License, `<医院ID>_` prefixes, lengths, required
elements), keeps the apply forms, answers the seed's codes (0, -3, -88, -99; -1 on demand), and
calls the hospital's SynStatusInfo back with exam statuses 00/20/50/70."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from xml.sax.saxutils import escape, quoteattr

import aiohttp
import structlog
from aiohttp import web
from pydantic import Field, SecretStr

from agent.config import Secret
from agent.simulators.base import Counts, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled
from agent.uplinks.provincial_imaging import elements, soap

log = structlog.get_logger(__name__)
SERVICE_PATH = "/YlzSynInfoService/services/service"
REGISTERED = ("20", "50", "70")  # 已检查登记或检查完成或报告完成: no more UPDATE/DELETE (-88)


class ProvincialImagingSimulatorConfig(ControlOptions):
    """[simulators.<name>] type = "provincial_imaging" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8794
    license: Secret = SecretStr("F9BDEFC9EDD6426E57E9DFEFE3A74FA2")  # the seed's example
    hospital_id: str = "7173"
    namespace: str = "http://service.ylz.com"
    status_url: str | None = None  # the hospital's SynStatusInfo (the agent's listener)
    auto_status: list[str] = []  # statuses reported after each accepted INSERT, in order


@dataclass
class ProvincialFaults(Faults):
    """The shared switches, plus answer codes to give the next requests (e.g. "-1")."""

    codes_next: list[str] = field(default_factory=list)


@dataclass
class Received(Counts):
    """What the platform got: accepted calls, refusals, and the statuses it reported."""

    calls: list[dict[str, Any]] = field(default_factory=list)  # {action, apply_no, code}
    refused: list[dict[str, Any]] = field(default_factory=list)  # {code, problems}
    statuses: list[dict[str, Any]] = field(default_factory=list)  # {apply_no, status, answer}


class ProvincialImagingSimulator(SimulatedCloud[Received]):
    """The simulator: `await start()`, point the uplink at `service_url`, inspect `received`."""

    faults: ProvincialFaults

    def __init__(
        self, name: str, config: ProvincialImagingSimulatorConfig, state_dir: Path | None = None
    ) -> None:
        super().__init__(
            name, config.host, config.port, ProvincialFaults(), Received(), state_dir=state_dir
        )
        self.config = config
        self.forms: dict[str, dict[str, Any]] = {}  # ApplyNo (prefixed) → {order, status}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def service_url(self) -> str:
        """The SynApplyInfo address of the running simulator."""
        return f"http://{self.host}:{self.port}{SERVICE_PATH}"

    def add_routes(self, app: web.Application) -> None:
        """The SynApplyInfo service and its WSDL."""
        app.router.add_post(SERVICE_PATH, self._apply)
        app.router.add_get(SERVICE_PATH, self._wsdl)

    def memory(self) -> dict[str, Any]:
        """The apply forms."""
        return {"forms": self.forms}

    def restore(self, memory: dict[str, Any]) -> None:
        """Take the apply forms back."""
        self.forms = dict(memory.get("forms") or {})

    def forget(self) -> None:
        """Forget every apply form."""
        self.forms = {}

    async def stop(self) -> None:
        """Stop status calls in flight, then serving."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()

    async def _wsdl(self, request: web.Request) -> web.Response:
        text = soap.wsdl(*soap.APPLY, self.config.namespace, self.service_url)
        return web.Response(text=text, content_type="text/xml", charset="utf-8")

    async def _apply(self, request: web.Request) -> web.StreamResponse:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        try:
            text = soap.argument(await request.read(), soap.APPLY[0])
        except soap.SoapError as err:
            return web.Response(status=500, body=soap.fault(str(err)), content_type="text/xml")
        code, desc = self._judge_apply(text)
        result = soap.result_xml(code, desc)
        body = soap.response(soap.APPLY[0], result, self.config.namespace)
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    def _judge_apply(self, text: str) -> tuple[str, str]:
        try:
            header = elements.header_of(text)
            order = elements.normalise(elements.from_xml(text))
        except (ValueError, SyntaxError) as err:
            return self._refuse("-3", [f"XmlDocument: {type(err).__name__}"])
        problems = self._header_problems(header)
        problems += self._unprefix(order)
        if not problems:
            problems = elements.check(order, elements.Rules())
        if problems:
            return self._refuse("-3", problems)
        if self.faults.codes_next:
            code = self.faults.codes_next.pop(0)
            self._note(order, code)
            return code, "模拟失败"
        apply_no = elements.prefixed(str(order["Exam"]["ApplyNo"]), self.config.hospital_id)
        code, desc = self._apply_action(apply_no, order)
        self._note(order, code, apply_no)
        return code, desc

    def _header_problems(self, header: dict[str, str]) -> list[str]:
        problems = []
        if header.get("License") != self.config.license.get_secret_value():
            problems.append("License: not this platform's")
        if not header.get("Application"):
            problems.append("Application: required")
        return problems

    def _unprefix(self, order: dict[str, Any]) -> list[str]:
        """Check the `<医院ID>_` prefixes and take them off, so the table's lengths apply."""
        prefix = f"{self.config.hospital_id}_"
        problems = []
        for part, name in (("Patient", "SickNo"), ("Exam", "ApplyNo")):
            values = order.get(part)
            if not isinstance(values, dict) or not isinstance(values.get(name), str):
                continue
            if not values[name].startswith(prefix):
                problems.append(f"{part}.{name}: without the hospital's prefix")
            values[name] = values[name].removeprefix(prefix)
        return problems

    def _apply_action(self, apply_no: str, order: dict[str, Any]) -> tuple[str, str]:
        form = self.forms.get(apply_no)
        action = order["Action"]
        if action == "INSERT":
            if form is not None and form.get("status") in REGISTERED:
                return "-88", "申请单已检查登记，不能更新"
            self.forms[apply_no] = {"order": order, "status": None}
            self._report_after_insert(apply_no)
            return "0", "成功"
        if form is None or form.get("deleted"):
            return "-99", "该申请单不存在或已删除"
        if form.get("status") in REGISTERED:
            return "-88", "申请单在PACS系统已检查登记或检查完成或报告完成"
        if action == "UPDATE":
            form["order"] = order
        else:
            form["deleted"] = True
        return "0", "成功"

    def _refuse(self, code: str, problems: list[str]) -> tuple[str, str]:
        self.received.refused.append({"code": code, "problems": problems})
        self.record("SynApplyInfo", "refused", int(code), "; ".join(problems))
        return code, f"传入信息有误: {'; '.join(problems)}"

    def _note(self, order: dict[str, Any], code: str, apply_no: str | None = None) -> None:
        call = {"action": order["Action"], "apply_no": apply_no, "code": code, "order": order}
        self.received.calls.append(call)
        accepted = code == "0"
        self.record("SynApplyInfo", "accepted" if accepted else "refused", int(code), code)
        self.save()

    def _report_after_insert(self, apply_no: str) -> None:
        if not self.config.auto_status or self.config.status_url is None:
            return
        task = asyncio.create_task(self._report_all(apply_no, list(self.config.auto_status)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_all(self, apply_no: str, statuses: list[str]) -> None:
        for status in statuses:
            try:
                await self.send_status(apply_no, status)
            except (aiohttp.ClientError, OSError, soap.SoapError) as err:
                log.warning("simulator.status_failed", simulator=self.name, error=str(err))
                return

    async def send_status(
        self, apply_no: str, status: str, *, image_url: str | None = None, url: str | None = None
    ) -> tuple[str, str]:
        """Call the hospital's SynStatusInfo with `status` for `apply_no`; its (code, desc)."""
        target = url or self.config.status_url
        if target is None:
            raise ValueError("no status_url: where is the hospital's SynStatusInfo?")
        form = self.forms.get(apply_no, {})
        order = form.get("order") or {}
        client = soap.SoapClient(
            soap.STATUS[0], soap.wsdl(*soap.STATUS, self.config.namespace, target), None
        )
        body, headers = client.request(status_document(apply_no, status, order, image_url))
        async with (
            aiohttp.ClientSession() as session,
            session.post(target, data=body, headers=headers) as answer,
        ):
            content = await answer.read()
            kind = answer.headers.get("Content-Type", "text/xml")
            code, desc = soap.read_result(client.answer(answer.status, content, kind))
        if apply_no in self.forms:
            self.forms[apply_no]["status"] = status
        async with self.arrived:
            self.received.statuses.append({"apply_no": apply_no, "status": status, "answer": code})
            self.arrived.notify_all()
        self.save()
        return code, desc


def status_document(
    apply_no: str, status: str, order: dict[str, Any], image_url: str | None
) -> str:
    """The SynStatusInfo XmlDocument (§3.4.2.1) of one exam status."""
    exam, patient = order.get("Exam") or {}, order.get("Patient") or {}
    names = {"00": "检查取消", "20": "检查确认", "50": "收到影像", "70": "确认报告"}
    items = exam.get("ExamItems") or [{}]
    fields = [
        f"<ExamNo>{escape('E' + apply_no[-8:])}</ExamNo>",
        f"<ApplyNo>{escape(apply_no)}</ApplyNo>",
        f"<OrderNo>{escape(str(items[0].get('OrderNo') or ''))}</OrderNo>",
        f"<SickNo>{escape(str(patient.get('SickNo') or ''))}</SickNo>",
        f"<PatientSource>{escape(str((patient.get('PatientClass') or {}).get('name') or ''))}"
        "</PatientSource>",
        f"<ExamStatus code={quoteattr(status)}>{escape(names.get(status, ''))}</ExamStatus>",
        '<PerformDept code="0009">放射科</PerformDept>',
        "<OperateDate>2026-12-08</OperateDate><OperateTime>10:00:00</OperateTime>",
        '<Operater code="040002">管理员</Operater>',
    ]
    if image_url:
        fields.append(f"<ImageUrl>{escape(image_url)}</ImageUrl>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><XmlDocument><Exam>'
        + "".join(fields)
        + "</Exam></XmlDocument>"
    )


def build(
    name: str, config: ProvincialImagingSimulatorConfig, state_dir: Path | None = None
) -> ProvincialImagingSimulator:
    """Make the simulator from its validated config."""
    return attach(ProvincialImagingSimulator(name, config, state_dir), config)


async def serve(
    config: ProvincialImagingSimulatorConfig,
    *,
    ready: Callable[[ProvincialImagingSimulator], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate provincial-imaging`)."""
    simulator = ProvincialImagingSimulator("provincial_imaging", config, state_dir)
    await run_until_cancelled(simulator, control, ready, control_ready)
