"""The insurance imaging cloud's front-end ("getway", seed 004) as a simulator: it answers QR
requests (4.3), deletion notices (4.5) and the viewer plugin's hrball launch (4.4.3.1, the ID
number SM2-decrypted with its own key), and it polls the agent's report service (4.1.2),
fetches the image links it gives and pulls studies by C-MOVE as the Portal AE (4.2)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

import aiohttp
import segno
from aiohttp import web
from pydantic import Field

from agent.crypto import sm2, sm2keys
from agent.errors import CryptoError
from agent.simulators.base import Counts, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled
from agent.simulators.insurance_portal import Portal, Pulled, pull_study
from agent.simulators.ledger import Verdict

KEY_FILE = "sm2-private-key.hex"
QR_PARAMS = ("accessNumber", "modality", "hospitalId")
NOTICE_FIELDS = ("patientName", "accessionNo", "hospitalId", "operateDoctorName", "operateDateTime")
LAUNCH_PARAMS = (
    "hisUserId", "type", "doctorName", "department", "doctorSex", "doctorIdCardNo", "doctorCode",
    "doctorType", "hospitalId",
)  # fmt: skip
CHOICES = {"type": {"1", "2"}, "doctorSex": {"0", "1", "2", "9"}, "doctorType": {"1", "2", "3"}}
ID_CARD = re.compile(r"[0-9]{17}[0-9Xx]")
OK, BAD_PARAMETER = 200, 202
VERDICTS: dict[int, Verdict] = {OK: "accepted", 500: "failed"}  # any other code: refused


class InsuranceImagingSimulatorConfig(ControlOptions):
    """[simulators.<name>] type = "insurance_imaging" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8792
    hospital_id: str = "H33010200001"
    deletion_path: str = "/getway/image/delete"  # 4.5.2 is blank: ours, given to the agent
    time_format: str = "%Y-%m-%d %H:%M:%S"  # of operateDateTime and of the report windows
    sm2_private_key: str | None = None  # hex; default: made once in the state folder, or fresh
    sm2_layout: sm2.Layout = "C1C3C2"
    sm2_prefix: bool = True
    report_url: str | None = None  # the agent's report service, which the poller calls
    portal_ae: str = "PORTAL_AET"  # 4.2 方式一: the AE that C-MOVEs studies to itself
    portal_port: Annotated[int, Field(ge=1, le=65535)] = 11114  # its storage SCP's port


@dataclass
class InsuranceFaults(Faults):
    """The shared switches, plus the front-end's own error answers."""

    qr_error_next: int = 0  # answer the next N QR requests with qr_error_code
    qr_error_code: int = 500  # 500 内部服务错误 (retried) or 202 传参数不规范 (refused)


@dataclass
class Received(Counts):
    """What the front-end was asked and told, as it understood it."""

    qr: list[dict[str, str]] = field(default_factory=list)
    notices: list[dict[str, str]] = field(default_factory=list)
    launches: list[dict[str, str]] = field(default_factory=list)  # the ID number decrypted


class InsuranceImagingSimulator(SimulatedCloud[Received]):
    """The simulator: `await start()`, point the agent at `url`, inspect `received`, poll."""

    faults: InsuranceFaults

    def __init__(
        self, name: str, config: InsuranceImagingSimulatorConfig, state_dir: Path | None = None
    ) -> None:
        super().__init__(
            name, config.host, config.port, InsuranceFaults(), Received(), state_dir=state_dir
        )
        self.config = config
        self.private_key = _private_key(config.sm2_private_key, state_dir)

    @property
    def url(self) -> str:
        """Base URL of the running front-end (the agent's frontend_url)."""
        return f"http://{self.host}:{self.port}"

    @property
    def public_key(self) -> str:
        """The SM2 public key the agent encrypts with (hex, 04‖X‖Y)."""
        return sm2.public_key_of(self.private_key).hex()

    def add_routes(self, app: web.Application) -> None:
        """4.3 QR, 4.5 the deletion notice, 4.4.3.1 hrball."""
        app.router.add_get("/getway/reportAndFilm/api/{kind:qrurl|qrcode}", self._qr)
        app.router.add_route("*", self.config.deletion_path, self._notice)
        app.router.add_get("/hrball/", self._hrball)

    def judge(self, status: int, answer: Any) -> tuple[Verdict, int | None, str]:
        """The seed's {code, message}: 200 accepted, 500 failed, anything else refused."""
        if isinstance(answer, dict) and "code" in answer:
            code = int(answer["code"])
            verdict = VERDICTS.get(code, "refused")
            return verdict, code, str(answer.get("message") or "") if code != OK else ""
        return super().judge(status, answer)

    async def _qr(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        params = {name: request.query.get(name, "") for name in QR_PARAMS}
        if self.faults.qr_error_next > 0:
            self.faults.qr_error_next -= 1
            code = self.faults.qr_error_code
            return _answer(code, "内部服务错误" if code == 500 else "传参数不规范（少传参数）")
        if not all(params.values()) or params["hospitalId"] != self.config.hospital_id:
            return _answer(BAD_PARAMETER, "传参数不规范（少传参数）")
        link = f"{self.url}/iuweixin/iu_scanFilmInfo?info={params['accessNumber']}"
        data = link if request.match_info["kind"] == "qrurl" else _qr_png(link)
        async with self.arrived:
            self.received.qr.append({**params, "kind": request.match_info["kind"], "link": link})
            self.arrived.notify_all()
        return _answer(OK, "请求成功", data)

    async def _notice(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        fields = await _fields(request)
        missing = [name for name in NOTICE_FIELDS if not fields.get(name)]
        if missing or fields.get("hospitalId") != self.config.hospital_id:
            return _answer(BAD_PARAMETER, f"传参数不规范（少传参数）: {', '.join(missing)}")
        try:
            datetime.strptime(fields["operateDateTime"], self.config.time_format)
        except ValueError:
            return _answer(BAD_PARAMETER, "operateDateTime: not a DateTime")
        async with self.arrived:
            self.received.notices.append({**fields, "method": request.method})
            self.arrived.notify_all()
        return _answer(OK, "成功")

    async def _hrball(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        values = read_launch(request.query_string)
        problems = [name for name in LAUNCH_PARAMS if not values.get(name)]
        problems += [n for n, allowed in CHOICES.items() if values.get(n) not in allowed]
        if values.get("hospitalId") != self.config.hospital_id:
            problems.append("hospitalId")
        try:
            clear = sm2.decrypt_text(
                self.private_key,
                values.get("doctorIdCardNo", ""),
                layout=self.config.sm2_layout,
                prefix=self.config.sm2_prefix,
            )
        except CryptoError:
            clear = ""
        if not ID_CARD.fullmatch(clear):
            problems.append("doctorIdCardNo")
        if problems:
            return _answer(BAD_PARAMETER, f"传参数不规范: {', '.join(sorted(set(problems)))}")
        async with self.arrived:
            self.received.launches.append({**values, "doctorIdCardNo": clear})
            self.arrived.notify_all()
        return _answer(OK, "成功")

    async def poll(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST one query to the agent's report service (4.1.2) as the getway does; its answer."""
        assert self.config.report_url is not None, "report_url: where the agent's service is"
        async with (
            aiohttp.ClientSession() as client,
            client.post(self.config.report_url, json=body) as answer,
        ):
            found: dict[str, Any] = await answer.json(content_type=None)
        return found

    async def pull(self, host: str, port: int, called_ae: str, study_uid: str) -> Pulled:
        """C-ECHO and C-MOVE a study from the agent's Q/R SCP as the Portal AE (4.2 方式一)."""
        portal = Portal(self.config.portal_ae, self.config.portal_port)
        return await asyncio.to_thread(pull_study, host, port, called_ae, study_uid, portal)

    async def fetch(self, link: str) -> bytes:
        """GET one image link of an answer (4.2 方式二): the file's bytes, or an error."""
        async with aiohttp.ClientSession() as client, client.get(link) as answer:
            answer.raise_for_status()
            if answer.content_type != "application/dicom":
                raise ValueError(f"{link}: {answer.content_type}, not application/dicom")
            return await answer.read()


def read_launch(query: str) -> dict[str, str]:
    """A launch query as the plugin reads it: `$XX` escapes back to bytes, UTF-8."""
    values = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        values[name] = unquote(value.replace("$", "%"), errors="strict")
    return values


def _answer(code: int, message: str, data: str = "") -> web.Response:
    return web.json_response({"code": code, "message": message, "data": data})


def _qr_png(link: str) -> str:
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="png", scale=4)
    return base64.b64encode(out.getvalue()).decode()


async def _fields(request: web.Request) -> dict[str, str]:
    if request.method == "GET":
        return dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {k: str(v) for k, v in (await request.post()).items()}


def _private_key(given: str | None, state_dir: Path | None) -> int:
    """The given key, the one kept in the state folder, or a new one (kept there if given one)."""
    if given:
        return sm2.load_private_key(given)
    path = state_dir / KEY_FILE if state_dir is not None else None
    if path is not None and path.exists():
        return sm2.load_private_key(path.read_text(encoding="ascii").strip())
    private = sm2keys.generate_private_key()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(f"{private:064x}\n")
    return private


def build(
    name: str, config: InsuranceImagingSimulatorConfig, state_dir: Path | None = None
) -> InsuranceImagingSimulator:
    """Make the simulator from its validated config."""
    return attach(InsuranceImagingSimulator(name, config, state_dir), config)


async def serve(
    config: InsuranceImagingSimulatorConfig,
    *,
    ready: Callable[[InsuranceImagingSimulator], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate insurance-imaging`)."""
    simulator = InsuranceImagingSimulator("insurance_imaging", config, state_dir)
    await run_until_cancelled(simulator, control, ready, control_ready)
